"""The openpi / RoboArena websocket protocol spoken by the official DreamZero server.

* Frames are binary msgpack with NumPy arrays encoded by ``openpi_client.msgpack_numpy``.
* On connect the server sends its config (``PolicyServerConfig``; for DROID ``image_resolution``,
  ``needs_wrist_camera``, ``n_external_cameras``, ``needs_stereo_camera``, ``needs_session_id``,
  ``action_space``). We add ``action_horizon``, ``action_dim``, ``action_names``, ``model_id`` ...
* A request is a dict with ``"endpoint": "infer"`` (the default when absent, as openpi clients
  send none) or ``"reset"``. ``infer`` answers a packed float32 (H, D) array (official DreamZero)
  or a dict with ``"actions"`` (openpi); ``reset`` answers the text frame ``"reset successful"``.
* Errors are text frames. The official server then closes with code 1011; ``dreamzero serve`` does
  that for server-side failures and keeps the connection open after a malformed request.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from openpi_client import msgpack_numpy

from dreamzero_policy.core.errors import BackendError

RESET_OK = "reset successful"
ERROR_PREFIX = "error: "
PROTOCOL = "dreamzero-ros/1"


def pack(obj: Any) -> bytes:
    return msgpack_numpy.packb(obj)


def unpack(data: bytes) -> Any:
    try:
        return msgpack_numpy.unpackb(data)
    except Exception as exc:  # msgpack raises several unrelated types
        raise BackendError(f"malformed msgpack frame: {type(exc).__name__}: {exc}") from exc


def server_config(metadata: dict[str, Any], camera_keys: list[str]) -> dict[str, Any]:
    """The handshake: RoboArena ``PolicyServerConfig`` fields plus our backend metadata."""
    wrist = [k for k in camera_keys if "wrist" in k]
    return {
        "image_resolution": list(metadata.get("image_resolution", (180, 320))),
        "needs_wrist_camera": bool(wrist),
        "n_external_cameras": len(camera_keys) - len(wrist),
        "needs_stereo_camera": False,
        "needs_session_id": True,
        "action_space": metadata.get("action_space", "joint_position"),
        "protocol": PROTOCOL,
        **{k: v for k, v in metadata.items() if k not in ("image_resolution", "action_space")},
    }


def response_to_result(resp: Any) -> dict[str, Any]:
    """Normalise an infer response (bare array or dict) to ``{"actions": ..., ...}``."""
    if isinstance(resp, np.ndarray):
        return {"actions": resp}
    if isinstance(resp, dict) and "actions" in resp:
        return resp
    raise BackendError(
        f"unexpected infer response: {type(resp).__name__}"
        + (f" with keys {sorted(map(str, resp))}" if isinstance(resp, dict) else "")
    )
