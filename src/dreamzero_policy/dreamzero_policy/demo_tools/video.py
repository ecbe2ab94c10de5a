"""The demo video: the camera views side by side above the model's newest predicted frame.

Built from the finished bag (``rosbags``; no ROS), at a constant frame rate in recording time:
each output frame shows the newest image of every stream received up to that instant (zero-order
hold), so a slow stream simply repeats. Layout (``tile`` = one camera image size)::

    +-----------+-----------+-----------+
    | camera 1  | camera 2  | camera 3  |
    +-----------+-----------+-----------+
    |   model prediction (fit, centred) |
    +-----------------------------------+
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dreamzero_policy.core.images import decode_any_image
from dreamzero_policy.data.bagio import Bag
from dreamzero_policy.data.mapping import VideoEncoding
from dreamzero_policy.data.video import VideoWriter

_ENCODING = VideoEncoding(codec="libx264", crf=23, preset="veryfast", gop=30, pix_fmt="yuv420p")


@dataclass(frozen=True)
class VideoSummary:
    path: Path
    frames: int
    fps: float
    size: tuple[int, int]  # (width, height)
    camera_frames: dict[str, int]
    predicted_frames: int


def _label(img: np.ndarray, text: str) -> None:
    cv2.putText(img, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)


def _fit(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """``img`` scaled to fit (width, height) keeping its aspect ratio, centred on black."""
    out = np.zeros((height, width, 3), np.uint8)
    scale = min(width / img.shape[1], height / img.shape[0])
    w, h = max(1, int(img.shape[1] * scale)), max(1, int(img.shape[0] * scale))
    x, y = (width - w) // 2, (height - h) // 2
    out[y : y + h, x : x + w] = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    return out


def compose(
    cameras: list[tuple[str, np.ndarray | None]], predicted: np.ndarray | None, tile: tuple[int, int], caption: str = ""
) -> np.ndarray:
    """One output frame (H = 2 * tile height, W = n_cameras * tile width), uint8 RGB."""
    tw, th = tile
    row = []
    for name, img in cameras:
        t = _fit(img, tw, th) if img is not None else np.zeros((th, tw, 3), np.uint8)
        _label(t, name if img is not None else f"{name}: no image yet")
        row.append(t)
    width = tw * len(cameras)
    bottom = _fit(predicted, width, th) if predicted is not None else np.zeros((th, width, 3), np.uint8)
    _label(bottom, "model prediction" if predicted is not None else "model prediction: none yet")
    frame = np.vstack([np.hstack(row), bottom])
    if caption:
        cv2.putText(
            frame, caption, (6, frame.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1, cv2.LINE_AA
        )
    return frame


def write_video(
    bag_path: Path,
    out: Path,
    camera_topics: list[str],
    predicted_topic: str,
    fps: float = 10.0,
    tile: tuple[int, int] = (320, 240),
) -> VideoSummary:
    """Render ``out`` (mp4, H.264) from the bag; raises ValueError when no camera image was recorded."""
    names = [t.strip("/").split("/")[-2] if t.count("/") >= 2 else t for t in camera_topics]
    latest: dict[str, np.ndarray | None] = dict.fromkeys(camera_topics)
    predicted: np.ndarray | None = None
    counts = dict.fromkeys([*camera_topics, predicted_topic], 0)
    writer = VideoWriter(out, fps, _ENCODING)
    start: int | None = None
    frames = 0
    try:
        with Bag(bag_path) as bag:
            for conn, t, raw in bag.read([*camera_topics, predicted_topic]):
                if start is None:
                    start = t
                # Emit every frame whose instant lies before this message (state = what arrived before).
                while start + int(frames * 1e9 / fps) < t and any(v is not None for v in latest.values()):
                    caption = f"t = {frames / fps:5.1f} s"
                    writer.write(compose(list(zip(names, latest.values(), strict=True)), predicted, tile, caption))
                    frames += 1
                if start + int(frames * 1e9 / fps) < t:  # nothing to show yet: skip ahead in time
                    frames = int((t - start) * fps / 1e9)
                img = decode_any_image(bag.deserialize(raw, conn.msgtype))
                counts[conn.topic] += 1
                if conn.topic == predicted_topic:
                    predicted = img
                else:
                    latest[conn.topic] = img
        if not any(counts[t] for t in camera_topics):
            raise ValueError(f"no camera images in {bag_path} on {', '.join(camera_topics)}; cannot make a video")
        writer.write(compose(list(zip(names, latest.values(), strict=True)), predicted, tile, "end"))
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return VideoSummary(
        out,
        writer.frames,
        fps,
        (tile[0] * len(camera_topics), tile[1] * 2),
        {t: counts[t] for t in camera_topics},
        counts[predicted_topic],
    )
