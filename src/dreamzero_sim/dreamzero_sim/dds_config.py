"""Fast DDS transport settings the sim node needs for camera images (applied before ``rclpy.init``).

Why: Fast DDS sends same-host samples through a shared-memory segment owned by the *writer's*
participant, 512 KiB by default. One camera cycle publishes three 320x240 rgb8 images (225 KiB each)
back to back, so the third image's buffer is taken by recycling the oldest one still in the
segment: the first camera of every cycle (``exterior_1``) was lost whenever a reader had not yet
copied it (about 40 % of its frames under load), best-effort QoS being allowed to drop it. A larger
segment keeps several whole cycles in flight. Only the sim's own participant is affected.

A user's own Fast DDS configuration (a profiles file or ``FASTDDS_BUILTIN_TRANSPORTS``) and other
RMW implementations are left alone.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

SHM_SEGMENT_BYTES = 16 * 1024 * 1024  # ~20 cycles of three 320x240 images, ~5 of three 640x480 ones
_FASTDDS_RMWS = ("", "rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp")
_USER_SETTINGS = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS")

_PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<!-- Written by dreamzero_sim.dds_config: a larger shared-memory segment for camera images. -->
<dds xmlns="http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles">
  <profiles>
    <transport_descriptors>
      <transport_descriptor>
        <transport_id>dreamzero_sim_shm</transport_id>
        <type>SHM</type>
        <segment_size>{segment}</segment_size>
      </transport_descriptor>
      <transport_descriptor>
        <transport_id>dreamzero_sim_udp</transport_id>
        <type>UDPv4</type>
      </transport_descriptor>
    </transport_descriptors>
    <participant profile_name="dreamzero_sim_participant" is_default_profile="true">
      <rtps>
        <userTransports>
          <transport_id>dreamzero_sim_shm</transport_id>
          <transport_id>dreamzero_sim_udp</transport_id>
        </userTransports>
        <useBuiltinTransports>false</useBuiltinTransports>
      </rtps>
    </participant>
  </profiles>
</dds>
"""


def profile_xml(segment_bytes: int = SHM_SEGMENT_BYTES) -> str:
    """The Fast DDS profile: SHM with a ``segment_bytes`` segment plus UDPv4 (the builtin pair)."""
    if segment_bytes <= 0:
        raise ValueError(f"segment_bytes must be > 0, got {segment_bytes}")
    return _PROFILE.format(segment=int(segment_bytes))


def configure_camera_transport(environ: MutableMapping[str, str] | None = None, directory: Path | None = None) -> str:
    """Point Fast DDS at :func:`profile_xml` unless the user configured DDS; returns what was done.

    The file is content-addressed in ``directory`` (default: the temp dir), so concurrent nodes
    share one file and nothing accumulates.
    """
    env = os.environ if environ is None else environ
    rmw = env.get("RMW_IMPLEMENTATION", "")
    if rmw not in _FASTDDS_RMWS:
        return f"DDS transport unchanged (RMW_IMPLEMENTATION={rmw})"
    user = [k for k in _USER_SETTINGS if env.get(k)]
    if user:
        return f"DDS transport unchanged ({user[0]} set by the user)"
    text = profile_xml()
    folder = Path(tempfile.gettempdir()) if directory is None else Path(directory)
    path = folder / f"dreamzero_sim_fastdds_{hashlib.sha256(text.encode()).hexdigest()[:12]}.xml"
    if not path.is_file() or path.read_text() != text:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
    env["FASTRTPS_DEFAULT_PROFILES_FILE"] = str(path)
    return f"Fast DDS shared-memory segment {SHM_SEGMENT_BYTES >> 20} MiB for camera images ({path})"
