"""Image decoding for every supported encoding, with row padding, endianness and bad input."""

from __future__ import annotations

import array
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from dreamzero_policy.core.errors import DreamZeroError, ImageDecodeError
from dreamzero_policy.core.images import SUPPORTED_ENCODINGS, decode_compressed_image, decode_image

RNG = np.random.default_rng(0)
H, W = 6, 10
RGB = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)


def raw(encoding: str, pixels: np.ndarray, pad: int = 0, big: bool = False) -> SimpleNamespace:
    """An Image-like object whose rows are ``pad`` bytes longer than the pixels."""
    rows = (
        pixels.reshape(pixels.shape[0], -1).view(np.uint8)
        if pixels.dtype != np.uint8
        else pixels.reshape(pixels.shape[0], -1)
    )
    data = np.zeros((rows.shape[0], rows.shape[1] + pad), np.uint8)
    data[:, : rows.shape[1]] = rows
    return SimpleNamespace(
        height=pixels.shape[0],
        width=pixels.shape[1],
        encoding=encoding,
        is_bigendian=int(big),
        step=data.shape[1],
        data=data.reshape(-1),
    )


@pytest.mark.parametrize("pad", [0, 3])
def test_data_images_8bit_colour_orders(pad: int) -> None:
    alpha = np.full((H, W, 1), 7, np.uint8)
    cases = {
        "rgb8": RGB,
        "bgr8": RGB[..., ::-1],
        "8UC3": RGB[..., ::-1],
        "rgba8": np.concatenate([RGB, alpha], 2),
        "bgra8": np.concatenate([RGB[..., ::-1], alpha], 2),
        "8UC4": np.concatenate([RGB[..., ::-1], alpha], 2),
    }
    for enc, pix in cases.items():
        out = decode_image(raw(enc, np.ascontiguousarray(pix), pad))
        assert out.dtype == np.uint8 and out.shape == (H, W, 3), enc
        np.testing.assert_array_equal(out, RGB, err_msg=enc)


@pytest.mark.parametrize("enc", ["mono8", "8UC1"])
def test_data_images_mono8(enc: str) -> None:
    gray = RGB[..., 0].copy()
    out = decode_image(raw(enc, gray, pad=5))
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, axis=2))


@pytest.mark.parametrize("big", [False, True])
def test_data_images_16bit_endianness(big: bool) -> None:
    values = RNG.integers(0, 65536, (H, W), dtype=np.uint16)
    pix = values.astype(">u2" if big else "<u2")
    for enc in ("mono16", "16UC1"):
        out = decode_image(raw(enc, pix, pad=2, big=big))
        np.testing.assert_array_equal(out[..., 1], (values >> 8).astype(np.uint8))
    rgb16 = RNG.integers(0, 65536, (H, W, 3), dtype=np.uint16)
    out = decode_image(raw("rgb16", rgb16.astype(">u2" if big else "<u2"), big=big))
    np.testing.assert_array_equal(out, (rgb16 >> 8).astype(np.uint8))
    out = decode_image(raw("bgr16", rgb16[..., ::-1].astype(">u2" if big else "<u2").copy(), big=big))
    np.testing.assert_array_equal(out, (rgb16 >> 8).astype(np.uint8))


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_data_images_bayer_patterns_recover_a_flat_colour(pattern: str) -> None:
    colour = {"r": 200, "g": 100, "b": 30}
    mosaic = np.zeros((8, 8), np.uint8)
    for (dy, dx), ch in zip([(0, 0), (0, 1), (1, 0), (1, 1)], pattern, strict=False):
        mosaic[dy::2, dx::2] = colour[ch]
    out = decode_image(raw(f"bayer_{pattern}8", mosaic))
    np.testing.assert_allclose(out[2:-2, 2:-2].reshape(-1, 3).mean(0), [200, 100, 30], atol=2)


@pytest.mark.parametrize("enc,order", [("yuv422", "UYVY"), ("uyvy", "UYVY"), ("yuv422_yuy2", "YUYV"), ("yuyv", "YUYV")])
def test_data_images_packed_yuv(enc: str, order: str) -> None:
    y, u, v = 120, 90, 200  # a reddish colour; BT.601 video range, as OpenCV and cv_bridge decode it
    c = 1.164 * (y - 16)
    expect = np.array([c + 1.596 * (v - 128), c - 0.391 * (u - 128) - 0.813 * (v - 128), c + 2.018 * (u - 128)])
    quad = {"UYVY": [u, y, v, y], "YUYV": [y, u, y, v]}[order]
    data = np.tile(np.array(quad, np.uint8), (4, 4))  # 4 rows, 8 px
    msg = SimpleNamespace(
        height=4,
        width=8,
        encoding=enc,
        is_bigendian=0,
        step=16 + 4,
        data=np.concatenate([data, np.zeros((4, 4), np.uint8)], 1).reshape(-1),
    )
    out = decode_image(msg)
    assert out.shape == (4, 8, 3)
    np.testing.assert_allclose(out.reshape(-1, 3).mean(0), np.clip(expect, 0, 255), atol=3)


def test_data_images_every_supported_encoding_is_tested() -> None:
    covered = {
        "rgb8",
        "bgr8",
        "8UC3",
        "rgba8",
        "bgra8",
        "8UC4",
        "mono8",
        "8UC1",
        "mono16",
        "16UC1",
        "rgb16",
        "bgr16",
        "bayer_rggb8",
        "bayer_bggr8",
        "bayer_gbrg8",
        "bayer_grbg8",
        "yuv422",
        "uyvy",
        "yuv422_yuy2",
        "yuyv",
    }
    untested = set(SUPPORTED_ENCODINGS) - covered
    for enc in sorted(untested):  # rgba16/bgra16: check through the generic path
        pix = np.concatenate([RGB.astype(np.uint16) << 8, np.zeros((H, W, 1), np.uint16)], 2)
        if enc.startswith("bgr"):
            pix = np.concatenate([pix[..., 2::-1], pix[..., 3:]], 2)
        np.testing.assert_array_equal(decode_image(raw(enc, np.ascontiguousarray(pix).astype("<u2"))), RGB, err_msg=enc)


def test_data_images_rclpy_style_array_data() -> None:
    msg = raw("rgb8", RGB)
    msg.data = array.array("B", msg.data.tobytes())
    np.testing.assert_array_equal(decode_image(msg), RGB)
    msg.data = bytes(msg.data)
    np.testing.assert_array_equal(decode_image(msg), RGB)


@pytest.mark.parametrize(
    "change,match",
    [
        ({"encoding": "rgb9"}, "unsupported image encoding"),
        ({"step": W * 3 - 1}, "step"),
        ({"height": 0}, "empty size"),
        ({"data": np.zeros(10, np.uint8)}, "expected step"),
    ],
)
def test_data_images_bad_raw_images_raise(change: dict, match: str) -> None:
    msg = raw("rgb8", RGB)
    for k, v in change.items():
        setattr(msg, k, v)
    with pytest.raises(ImageDecodeError, match=match) as info:
        decode_image(msg)
    assert isinstance(info.value, DreamZeroError)


def test_data_images_missing_field_raises() -> None:
    with pytest.raises(ImageDecodeError, match="no field 'encoding'"):
        decode_image(SimpleNamespace(height=1, width=1, step=3, data=b"abc"))


def _compressed(ext: str, pixels_bgr: np.ndarray, fmt: str) -> SimpleNamespace:
    ok, buf = cv2.imencode(ext, pixels_bgr)
    assert ok
    return SimpleNamespace(format=fmt, data=buf.reshape(-1))


def test_data_images_png_is_lossless_in_every_format_spelling() -> None:
    bgr = np.ascontiguousarray(RGB[..., ::-1])
    for fmt in ("png", "bgr8; png compressed bgr8", "rgb8; png compressed bgr8", ""):
        np.testing.assert_array_equal(decode_compressed_image(_compressed(".png", bgr, fmt)), RGB, err_msg=fmt)
    # A publisher that compressed rgb8 pixels says so; the decoder must not swap them again.
    np.testing.assert_array_equal(decode_compressed_image(_compressed(".png", RGB, "rgb8; png compressed rgb8")), RGB)
    gray = RGB[..., 0].copy()
    np.testing.assert_array_equal(
        decode_compressed_image(_compressed(".png", gray, "mono8; png compressed mono8")),
        np.repeat(gray[..., None], 3, 2),
    )
    g16 = (gray.astype(np.uint16) << 8) | 0x7F
    np.testing.assert_array_equal(decode_compressed_image(_compressed(".png", g16, "png"))[..., 0], gray)


def test_data_images_jpeg_decodes_close_to_the_source() -> None:
    smooth = np.zeros((32, 48, 3), np.uint8)
    smooth[..., 0], smooth[..., 1], smooth[..., 2] = 200, np.linspace(0, 255, 48)[None, :], 40
    out = decode_compressed_image(_compressed(".jpg", np.ascontiguousarray(smooth[..., ::-1]), "jpeg"))
    assert out.shape == smooth.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - smooth).mean() < 3


@pytest.mark.parametrize(
    "msg,match",
    [
        (SimpleNamespace(format="jpeg", data=np.frombuffer(b"\xff\xd8garbage", np.uint8)), "could not be decoded"),
        (SimpleNamespace(format="jpeg", data=np.zeros(0, np.uint8)), "no data"),
        (SimpleNamespace(format="16UC1; compressedDepth png", data=np.ones(8, np.uint8)), "depth"),
    ],
)
def test_data_images_bad_compressed_images_raise(msg: SimpleNamespace, match: str) -> None:
    with pytest.raises(ImageDecodeError, match=match):
        decode_compressed_image(msg)
