"""Model observation assembly: decoded camera frames + raw joint state -> request / model input.

Two stages mirror the official DROID split between robot client and server:

1. ``build_request`` (robot side, any backend): each camera's frames are resized with black
   padding to ``spec.request_size`` and stacked (T, h, w, 3) uint8; the state becomes the float32
   vector the model expects (joints as measured, gripper mapped to 0 = open .. 1 = closed). The
   result is a protocol request dict (RoboArena/openpi keys) that every backend accepts.
2. ``build_mosaic`` (model side, in-process backend / ``dreamzero serve``): each view is centre
   cropped (``spec.crop_fraction``), resized to its cells and tiled into the model frame
   (T, H, W, 3) following ``spec.mosaic``; empty cells stay black.

Resizing uses ``cv2.resize`` with INTER_LINEAR (speed: see ``_resize``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from dreamzero_policy.core.errors import ImageDecodeError, ObservationError
from dreamzero_policy.runtime.io_spec import IoSpec

JOINT_KEY = "observation/joint_position"
GRIPPER_KEY = "observation/gripper_position"


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    if img.shape[0] == h and img.shape[1] == w:
        return img
    # INTER_LINEAR, not INTER_AREA: AREA costs ~1.2 ms per 640x480 frame at non-integer factors,
    # which alone breaks the 3 ms budget for three cameras; the aliasing at 2-3x is mild.
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)


def _check_rgb(img: Any, what: str) -> np.ndarray:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        desc = f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
        raise ObservationError(f"{what}: expected an (H, W, 3) uint8 RGB image, got {desc}", "bad_input")
    if img.shape[0] < 2 or img.shape[1] < 2:
        raise ObservationError(f"{what}: image too small {img.shape}", "bad_input")
    return img


def resize_with_pad(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Fit ``img`` (H, W, 3) uint8 into ``size`` (h, w) keeping its aspect ratio; pad black, centred."""
    h, w = size
    ih, iw = img.shape[:2]
    scale = min(h / ih, w / iw)
    nh, nw = max(1, round(ih * scale)), max(1, round(iw * scale))
    resized = _resize(img, nh, nw)
    if nh == h and nw == w:
        return np.ascontiguousarray(resized)
    out = np.zeros((h, w, 3), dtype=np.uint8)
    top, left = (h - nh) // 2, (w - nw) // 2
    out[top : top + nh, left : left + nw] = resized
    return out


def center_crop(img: np.ndarray, fraction: float) -> np.ndarray:
    """The centred ``fraction`` of each side (a view, no copy)."""
    if fraction >= 1.0:
        return img
    ih, iw = img.shape[:2]
    ch, cw = max(1, round(ih * fraction)), max(1, round(iw * fraction))
    top, left = (ih - ch) // 2, (iw - cw) // 2
    return img[top : top + ch, left : left + cw]


def state_vector(spec: IoSpec, state_raw: np.ndarray) -> np.ndarray:
    """(state_dim,) float32: joints as measured, gripper as 0 = open .. 1 = closed (clipped)."""
    raw = np.asarray(state_raw, dtype=np.float64).reshape(-1)
    if raw.shape != (spec.state_dim,):
        raise ObservationError(f"state: expected {spec.state_dim} values, got {raw.shape}", "bad_input")
    if not np.all(np.isfinite(raw)):
        raise ObservationError("state: contains NaN or inf", "bad_input")
    out = raw.astype(np.float32)
    if spec.gripper_joint:
        g = (raw[-1] - spec.gripper_open) / (spec.gripper_closed - spec.gripper_open)
        out[-1] = np.float32(np.clip(g, 0.0, 1.0))
    return out


def build_request(
    spec: IoSpec,
    frames: Mapping[str, Sequence[Any]],
    state_raw: np.ndarray,
    prompt: str,
    session_id: str,
    decode: Callable[[Any], np.ndarray] | None = None,
) -> dict[str, Any]:
    """A protocol request for one inference.

    ``frames[cam]``: T payloads oldest -> newest (arrays, or messages when ``decode`` is given;
    None = absent optional camera, sent as black). Returns ``{request_key: uint8 (T, h, w, 3), ...,
    "observation/joint_position": float32 (J,), "observation/gripper_position": float32 (1,)
    (only with a gripper), "prompt": str, "session_id": str}``.
    """
    h, w = spec.request_size
    out: dict[str, Any] = {}
    n = None
    for cam in spec.cameras:
        seq = frames.get(cam.name)
        if seq is None or len(seq) == 0:
            raise ObservationError(f"camera {cam.name}: no frames in the snapshot", "missing")
        if n is None:
            n = len(seq)
        elif len(seq) != n:
            raise ObservationError(f"camera {cam.name}: {len(seq)} frames, other cameras have {n}", "bad_input")
        stack = np.zeros((len(seq), h, w, 3), dtype=np.uint8)
        decoded_cache: dict[int, np.ndarray] = {}
        for t, payload in enumerate(seq):
            if payload is None:
                continue  # absent optional camera: black frame
            # Left-padding repeats the same payload: decode and resize it once.
            key = id(payload)
            if key not in decoded_cache:
                try:
                    img = decode(payload) if decode is not None else payload
                except ImageDecodeError as exc:
                    # A malformed frame is bad input, never a backend failure (no session reset).
                    raise ObservationError(f"camera {cam.name}: {exc}", "bad_input") from exc
                decoded_cache[key] = resize_with_pad(_check_rgb(img, f"camera {cam.name}"), (h, w))
            stack[t] = decoded_cache[key]
        out[cam.request_key] = stack
    vec = state_vector(spec, state_raw)
    nj = len(spec.state_joints)
    out[JOINT_KEY] = vec[:nj].copy()
    if spec.gripper_joint:
        out[GRIPPER_KEY] = vec[nj:].copy()
    out["prompt"] = prompt
    out["session_id"] = session_id
    return out


def request_images(spec: IoSpec, request: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Camera name -> uint8 (T, h, w, 3) from a request (accepts (h, w, 3) single frames too)."""
    images: dict[str, np.ndarray] = {}
    n = None
    for cam in spec.cameras:
        if cam.request_key not in request:
            raise ObservationError(f"request: missing image {cam.request_key!r}", "bad_input")
        arr = np.asarray(request[cam.request_key])
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            raise ObservationError(
                f"request: {cam.request_key!r} must be uint8 (H, W, 3) or (T, H, W, 3), got {arr.dtype} {arr.shape}",
                "bad_input",
            )
        if n is not None and arr.shape[0] != n:
            raise ObservationError(f"request: {cam.request_key!r} has {arr.shape[0]} frames, expected {n}", "bad_input")
        n = arr.shape[0]
        images[cam.name] = arr
    return images


def request_state(spec: IoSpec, request: Mapping[str, Any]) -> np.ndarray:
    """(state_dim,) float32 state from a request (gripper already 0..1)."""
    parts = [(JOINT_KEY, len(spec.state_joints))]
    if spec.gripper_joint:
        parts.append((GRIPPER_KEY, 1))
    vals = []
    for key, n in parts:
        if key not in request:
            raise ObservationError(f"request: missing {key!r}", "bad_input")
        v = np.asarray(request[key], dtype=np.float64).reshape(-1)
        if v.shape != (n,):
            raise ObservationError(f"request: {key!r} must have {n} values, got {v.shape}", "bad_input")
        if not np.all(np.isfinite(v)):
            raise ObservationError(f"request: {key!r} contains NaN or inf", "bad_input")
        vals.append(v)
    return np.concatenate(vals).astype(np.float32)


def build_mosaic(spec: IoSpec, images: Mapping[str, np.ndarray], out_size: tuple[int, int]) -> np.ndarray:
    """Tile per-camera stacks (T, h, w, 3) into model frames uint8 (T, H, W, 3) by ``spec.mosaic``."""
    H, W = out_size
    rows, cols = len(spec.mosaic), len(spec.mosaic[0])
    if H % rows or W % cols:
        raise ObservationError(f"mosaic: model size {out_size} is not divisible by the {rows}x{cols} grid", "bad_input")
    ch, cw = H // rows, W // cols
    T = next(iter(images.values())).shape[0]
    out = np.zeros((T, H, W, 3), dtype=np.uint8)
    placed: set[str] = set()
    for r, row in enumerate(spec.mosaic):
        for c, name in enumerate(row):
            if name is None or name in placed:
                continue
            placed.add(name)
            cells = [(rr, cc) for rr, rw in enumerate(spec.mosaic) for cc, x in enumerate(rw) if x == name]
            r1 = max(rr for rr, _ in cells) + 1
            c1 = max(cc for _, cc in cells) + 1
            y0, x0, th, tw = r * ch, c * cw, (r1 - r) * ch, (c1 - c) * cw
            stack = images[name]
            if stack.shape[0] != T:
                raise ObservationError(f"mosaic: camera {name} has {stack.shape[0]} frames, expected {T}", "bad_input")
            for t in range(T):
                out[t, y0 : y0 + th, x0 : x0 + tw] = _resize(center_crop(stack[t], spec.crop_fraction), th, tw)
    return out
