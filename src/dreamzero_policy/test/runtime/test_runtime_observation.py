"""Observation assembly: resize-with-pad, request dicts, state vector, mosaic layout."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from dreamzero_policy.core.errors import ObservationError
from dreamzero_policy.core.images import decode_any_image
from dreamzero_policy.runtime.io_spec import load_io_spec
from dreamzero_policy.runtime.observation import (
    build_mosaic,
    build_request,
    request_images,
    request_state,
    resize_with_pad,
)

SPEC = load_io_spec("droid_sim")


def solid(h: int, w: int, rgb: tuple[int, int, int]) -> np.ndarray:
    img = np.empty((h, w, 3), np.uint8)
    img[:] = rgb
    return img


def test_resize_with_pad_keeps_aspect() -> None:
    out = resize_with_pad(solid(480, 640, (200, 10, 10)), (180, 320))
    assert out.shape == (180, 320, 3)
    # 640x480 -> 240x180 centred: 40 black columns each side
    assert out[:, :39].max() == 0 and out[:, -39:].max() == 0
    np.testing.assert_array_equal(out[90, 160], [200, 10, 10])


def test_request_from_ros_like_messages() -> None:
    colors = {"exterior_1": (255, 0, 0), "exterior_2": (0, 255, 0), "wrist": (0, 0, 255)}
    frames = {}
    for cam, c in colors.items():
        img = solid(48, 64, c)
        msg = SimpleNamespace(height=48, width=64, encoding="rgb8", is_bigendian=0, step=64 * 3, data=img.tobytes())
        frames[cam] = [msg, msg]
    state = np.array([0.1, 0.2, 0.3, -1.0, 0.5, 1.0, 0.7, 0.25])
    req = build_request(SPEC, frames, state, "pick", "s1", decode=decode_any_image)
    img = req["observation/exterior_image_0_left"]
    assert img.shape == (2, 180, 320, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img[1, 90, 160], [255, 0, 0])
    np.testing.assert_array_equal(req["observation/wrist_image_left"][0, 90, 160], [0, 0, 255])
    np.testing.assert_allclose(req["observation/joint_position"], state[:7], atol=1e-6)
    assert req["observation/gripper_position"].tolist() == [0.25]
    assert req["prompt"] == "pick" and req["session_id"] == "s1"
    np.testing.assert_allclose(request_state(SPEC, req), state.astype(np.float32))
    assert set(request_images(SPEC, req)) == {"exterior_1", "exterior_2", "wrist"}


def test_gripper_mapping_and_bad_state() -> None:
    droid = load_io_spec("droid")  # finger position: 0.04 m open .. 0 closed
    frames = {c.name: [solid(8, 8, (1, 2, 3))] for c in droid.cameras}
    req = build_request(droid, frames, np.array([0.0] * 7 + [0.01]), "p", "s")
    assert req["observation/gripper_position"][0] == pytest.approx(0.75)
    with pytest.raises(ObservationError, match="NaN"):
        build_request(droid, frames, np.array([np.nan] * 8), "p", "s")
    with pytest.raises(ObservationError, match="uint8"):
        build_request(droid, {c.name: [np.zeros((8, 8), np.float32)] for c in droid.cameras}, np.zeros(8), "p", "s")
    with pytest.raises(ObservationError, match="frames"):
        build_request(droid, {**frames, "wrist": [frames["wrist"][0]] * 2}, np.zeros(8), "p", "s")


def test_mosaic_layout_droid() -> None:
    images = {
        "wrist": solid(180, 320, (0, 0, 255))[None],
        "exterior_1": solid(180, 320, (255, 0, 0))[None],
        "exterior_2": solid(180, 320, (0, 255, 0))[None],
    }
    m = build_mosaic(SPEC, images, (352, 640))
    assert m.shape == (1, 352, 640, 3)
    np.testing.assert_array_equal(m[0, 10, 10], [0, 0, 255])  # wrist spans the top row
    np.testing.assert_array_equal(m[0, 10, 600], [0, 0, 255])
    np.testing.assert_array_equal(m[0, 300, 100], [255, 0, 0])  # ext1 bottom-left
    np.testing.assert_array_equal(m[0, 300, 500], [0, 255, 0])  # ext2 bottom-right
    with pytest.raises(ObservationError, match="divisible"):
        build_mosaic(SPEC, images, (351, 640))


def test_request_validation() -> None:
    req = {c.request_key: np.zeros((4, 4, 3), np.uint8) for c in SPEC.cameras}
    assert request_images(SPEC, req)["wrist"].shape == (1, 4, 4, 3)
    with pytest.raises(ObservationError, match="missing"):
        request_state(SPEC, req)
    req["observation/joint_position"] = np.zeros(6)
    req["observation/gripper_position"] = np.zeros(1)
    with pytest.raises(ObservationError, match="7 values"):
        request_state(SPEC, req)
    del req["observation/wrist_image_left"]
    with pytest.raises(ObservationError, match="wrist"):
        request_images(SPEC, req)
