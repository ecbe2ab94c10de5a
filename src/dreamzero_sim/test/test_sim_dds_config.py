"""The sim's Fast DDS transport profile (larger shared-memory segment for camera images); no ROS needed."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from dreamzero_sim.dds_config import SHM_SEGMENT_BYTES, configure_camera_transport, profile_xml

NS = {"f": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}


def test_profile_holds_several_camera_cycles_and_keeps_udp() -> None:
    root = ET.fromstring(profile_xml())
    segment = int(root.find(".//f:transport_descriptor[f:type='SHM']/f:segment_size", NS).text)
    assert segment == SHM_SEGMENT_BYTES
    assert segment >= 10 * 3 * 320 * 240 * 3  # ten cycles of three 320x240 rgb8 images (default 512 KiB: two)
    ids = [e.text for e in root.findall(".//f:userTransports/f:transport_id", NS)]
    types = {
        d.find("f:transport_id", NS).text: d.find("f:type", NS).text
        for d in root.findall(".//f:transport_descriptor", NS)
    }
    assert sorted(types[i] for i in ids) == ["SHM", "UDPv4"]  # same pair as Fast DDS's builtin transports
    assert root.find(".//f:useBuiltinTransports", NS).text == "false"
    with pytest.raises(ValueError):
        profile_xml(0)


def test_configure_writes_one_shared_file_and_points_fast_dds_at_it(tmp_path: Path) -> None:
    env: dict[str, str] = {}
    note = configure_camera_transport(env, tmp_path)
    path = Path(env["FASTRTPS_DEFAULT_PROFILES_FILE"])
    assert path.parent == tmp_path and path.read_text() == profile_xml() and str(path) in note
    other: dict[str, str] = {"RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"}
    configure_camera_transport(other, tmp_path)  # a second node reuses the same file
    assert other["FASTRTPS_DEFAULT_PROFILES_FILE"] == str(path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.parametrize(
    "env",
    [
        {"FASTRTPS_DEFAULT_PROFILES_FILE": "/etc/mine.xml"},
        {"FASTDDS_DEFAULT_PROFILES_FILE": "/etc/mine.xml"},
        {"FASTDDS_BUILTIN_TRANSPORTS": "UDPv4"},
        {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"},
    ],
)
def test_user_dds_settings_and_other_middlewares_are_left_alone(tmp_path: Path, env: dict[str, str]) -> None:
    before = dict(env)
    assert "unchanged" in configure_camera_transport(env, tmp_path)
    assert env == before and not any(tmp_path.iterdir())
