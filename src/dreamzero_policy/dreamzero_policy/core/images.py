"""THE shared image decoder: ROS image messages -> (H, W, 3) uint8 RGB arrays (numpy + cv2 only).

Works on any object with the message's fields (rclpy messages, rosbags messages, simple
namespaces), so the runtime and the data pipeline decode images identically.

* ``sensor_msgs/Image`` (:func:`decode_image`): fields ``height``, ``width``, ``encoding``,
  ``is_bigendian``, ``step`` (bytes per row, may include padding) and ``data``.
* ``sensor_msgs/CompressedImage`` (:func:`decode_compressed_image`): fields ``format``
  (``"jpeg"``, ``"png"`` or the image_transport form ``"rgb8; jpeg compressed bgr8"``) and ``data``.

Conventions: 16-bit channels are reduced to 8 bits by dropping the low byte (``v >> 8``), alpha is
dropped, mono is replicated to three channels. ``8UC1``/``8UC3``/``8UC4`` follow OpenCV's
convention (mono / BGR / BGRA) as cv_bridge does. Depth-like encodings (``16UC1`` with
``compressedDepth``, ``32FC1``) are not colour images and raise :class:`ImageDecodeError`.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from dreamzero_policy.core.errors import ImageDecodeError

# encoding -> (channels, bytes per channel, cv2 conversion to RGB or None if already RGB/mono)
_RAW_ENCODINGS: dict[str, tuple[int, int, int | None]] = {
    "rgb8": (3, 1, None),
    "bgr8": (3, 1, cv2.COLOR_BGR2RGB),
    "rgba8": (4, 1, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, 1, cv2.COLOR_BGRA2RGB),
    "mono8": (1, 1, cv2.COLOR_GRAY2RGB),
    "8UC1": (1, 1, cv2.COLOR_GRAY2RGB),
    "8UC3": (3, 1, cv2.COLOR_BGR2RGB),
    "8UC4": (4, 1, cv2.COLOR_BGRA2RGB),
    "rgb16": (3, 2, None),
    "bgr16": (3, 2, cv2.COLOR_BGR2RGB),
    "rgba16": (4, 2, cv2.COLOR_RGBA2RGB),
    "bgra16": (4, 2, cv2.COLOR_BGRA2RGB),
    "mono16": (1, 2, cv2.COLOR_GRAY2RGB),
    "16UC1": (1, 2, cv2.COLOR_GRAY2RGB),
    # OpenCV's first-row-named Bayer aliases (RGGB etc.) match the ROS pattern names.
    "bayer_rggb8": (1, 1, cv2.COLOR_BayerRGGB2RGB),
    "bayer_bggr8": (1, 1, cv2.COLOR_BayerBGGR2RGB),
    "bayer_gbrg8": (1, 1, cv2.COLOR_BayerGBRG2RGB),
    "bayer_grbg8": (1, 1, cv2.COLOR_BayerGRBG2RGB),
    # Packed 4:2:2, two bytes per pixel. ROS "yuv422" is UYVY; "yuv422_yuy2" is YUYV.
    "yuv422": (2, 1, cv2.COLOR_YUV2RGB_UYVY),
    "uyvy": (2, 1, cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": (2, 1, cv2.COLOR_YUV2RGB_YUYV),
    "yuyv": (2, 1, cv2.COLOR_YUV2RGB_YUYV),
}

SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_RAW_ENCODINGS)


def _payload(data: Any) -> np.ndarray:
    """The ``data`` field as a flat uint8 array without copying when possible."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ImageDecodeError(f"image data must be uint8 bytes, got dtype {data.dtype}")
        return data.reshape(-1)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, dtype=np.uint8)
    try:  # array.array('B') (rclpy) exposes the buffer protocol; lists need a copy
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def _field(msg: Any, name: str) -> Any:
    try:
        return getattr(msg, name)
    except AttributeError:
        raise ImageDecodeError(f"image message has no field '{name}'") from None


def _to_uint8_rgb(img: np.ndarray, conversion: int | None) -> np.ndarray:
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if conversion is not None:
        img = cv2.cvtColor(img, conversion)
    elif img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    return np.ascontiguousarray(img)


def _raw_header(msg: Any) -> tuple[str, int, int, int, int]:
    """Validate a raw Image's header against its payload size without touching the pixels.

    Returns (encoding key, height, width, step, row bytes); raises :class:`ImageDecodeError`.
    """
    encoding = str(_field(msg, "encoding")).strip()
    height, width = int(_field(msg, "height")), int(_field(msg, "width"))
    step = int(_field(msg, "step"))
    key = encoding if encoding in _RAW_ENCODINGS else encoding.lower()
    if key not in _RAW_ENCODINGS:
        raise ImageDecodeError(f"unsupported image encoding '{encoding}' (supported: {', '.join(SUPPORTED_ENCODINGS)})")
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"image has an empty size {width}x{height}")
    channels, depth, _ = _RAW_ENCODINGS[key]
    row_bytes = width * channels * depth
    if step < row_bytes:
        raise ImageDecodeError(
            f"image step {step} is shorter than one row ({width} px x {channels * depth} B = {row_bytes} B)"
        )
    size = _payload_size(_field(msg, "data"))
    if size < step * height:
        raise ImageDecodeError(f"image data has {size} bytes, expected step*height = {step}*{height} = {step * height}")
    return key, height, width, step, row_bytes


def _payload_size(data: Any) -> int:
    """Byte count of a ``data`` field without copying it (len() of arrays/bytes is O(1))."""
    if isinstance(data, np.ndarray):
        return int(data.nbytes)
    try:
        return memoryview(data).nbytes
    except TypeError:
        return len(data)


def _compressed_header(msg: Any) -> str:
    """Validate a CompressedImage's format and that it has data; returns the lower-case format."""
    fmt = str(_field(msg, "format")).strip().lower()
    if "compresseddepth" in fmt:
        raise ImageDecodeError(f"compressed depth images are not colour images (format '{fmt}')")
    if _payload_size(_field(msg, "data")) == 0:
        raise ImageDecodeError(f"compressed image (format '{fmt}') has no data")
    return fmt


def _is_compressed(msg: Any) -> bool:
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def check_image(msg: Any) -> str | None:
    """Cheap header check of an Image / CompressedImage (no pixel decode): the reason the decoder
    would reject it, or None when the header is plausible.

    Raw images get every check :func:`decode_image` makes (encoding, size, ``step`` vs. row size,
    payload length), so a raw image that passes always decodes. A compressed payload can still fail
    in :func:`decode_compressed_image` (corrupt JPEG/PNG): that is only known after decoding.
    """
    try:
        if _is_compressed(msg):
            _compressed_header(msg)
        else:
            _raw_header(msg)
    except ImageDecodeError as exc:
        return str(exc)
    except (TypeError, ValueError) as exc:  # e.g. a non-numeric height on a duck-typed message
        return f"malformed image header: {exc}"
    return None


def decode_image(msg: Any) -> np.ndarray:
    """Decode a raw ``sensor_msgs/Image`` into an (H, W, 3) uint8 RGB array (a new array).

    Honours ``step`` (row padding), ``is_bigendian`` (16-bit encodings) and the encodings in
    :data:`SUPPORTED_ENCODINGS`. Raises :class:`ImageDecodeError` for an unknown encoding, a zero
    size, a ``step`` shorter than a row, or a payload shorter than ``step * height``.
    """
    key, height, width, step, row_bytes = _raw_header(msg)
    channels, depth, conversion = _RAW_ENCODINGS[key]
    data = _payload(_field(msg, "data"))
    rows = data[: step * height].reshape(height, step)[:, :row_bytes]
    if depth == 2:
        big = bool(getattr(msg, "is_bigendian", False))
        rows = np.ascontiguousarray(rows).view(">u2" if big else "<u2").astype(np.uint16)
    img = rows.reshape(height, width, channels) if channels > 1 else rows.reshape(height, width)
    if channels == 2:  # packed YUV 4:2:2 is two bytes per pixel, decoded by cvtColor as a whole
        img = np.ascontiguousarray(img)
    return _to_uint8_rgb(np.ascontiguousarray(img), conversion)


def decode_compressed_image(msg: Any) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG/PNG/anything cv2 reads) into (H, W, 3) uint8 RGB.

    ``format`` follows image_transport: ``"<orig>; <codec> compressed <enc>"`` where ``<enc>`` is
    the encoding the pixels had when compressed (``bgr8`` = OpenCV order, ``rgb8`` = swapped), or a
    bare codec name (``"jpeg"``, ``"png"``), which means OpenCV's BGR order. ``compressedDepth``
    payloads are depth maps, not colour images, and are rejected.
    """
    fmt = _compressed_header(msg)
    data = _payload(_field(msg, "data"))
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageDecodeError(
            f"compressed image (format '{fmt or 'unspecified'}', {data.size} B) could not be decoded"
        )
    compressed_enc = fmt.split("compressed", 1)[1].strip() if "compressed" in fmt else "bgr8"
    # cv2 hands back pixels in the order they were stored; image_transport stores bgr8 unless
    # the format says the publisher compressed rgb8 pixels.
    rgb_stored = compressed_enc.startswith("rgb")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.dtype != np.uint8:
        raise ImageDecodeError(f"compressed image decoded to unsupported dtype {img.dtype}")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_RGBA2RGB if rgb_stored else cv2.COLOR_BGRA2RGB)
    if img.shape[2] == 3:
        return np.ascontiguousarray(img) if rgb_stored else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    raise ImageDecodeError(f"compressed image decoded to {img.shape[2]} channels")


def decode_any_image(msg: Any) -> np.ndarray:
    """Dispatch on the fields: a ``format`` field means CompressedImage, else raw Image."""
    if _is_compressed(msg):
        return decode_compressed_image(msg)
    return decode_image(msg)
