"""Camera frames to H.264: one encoder thread per camera, fed in order, decoding on spare cores.

Used by pass 2 (``encode_selected``) and by the single-pass path (``live.py``). The calling
thread reads the bag and hands each selected message to its camera's worker through a bounded
queue (at most :data:`QUEUE_DEPTH` messages in flight per camera, so memory does not grow with
bag length); frames off the grid are never deserialised. The worker decodes the frame once (or
takes it from the decode pool, which works ahead on machines with more cores than cameras),
resizes it and feeds every episode writer that uses it. ``cv2.imdecode``/``resize`` and the codec
release the GIL, so cameras decode and encode in parallel with each other and with the reader.

A worker's failure stops the read at the next message and is re-raised on the calling thread,
naming the bag, the topic and the message ordinal; every writer is then aborted.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dreamzero_policy.core.errors import DatasetError
from dreamzero_policy.core.images import decode_compressed_image, decode_image
from dreamzero_policy.data.video import VideoWriter

QUEUE_DEPTH = 8  # messages in flight per camera: enough to ride out codec hiccups, bounded memory
_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


@dataclass
class Target:
    """One episode video that uses a frame ``repeat`` times in a row (held frames repeat)."""

    writer: VideoWriter
    repeat: int


class FrameDecoder:
    """Decodes one camera's messages to RGB at the writer's size.

    A JPEG much larger than the output is decoded at 1/2, 1/4 or 1/8 scale by libjpeg's DCT
    scaling (several times cheaper than a full decode + resize); the first frame is decoded in full
    by the shared decoder (``core.images``) to learn the source size. Everything else goes through
    the shared decoder unchanged, so both paths give the same colours.
    """

    def __init__(self, compressed: bool, size: tuple[int, int] | None) -> None:
        self.compressed, self.size = compressed, size
        self._flag: int | None = None  # cv2 reduced-decode flag once the source size is known
        self._known = False

    @property
    def ready(self) -> bool:
        """True once a frame decodes the same whatever frames came before (safe to decode in parallel)."""
        return not self.compressed or self.size is None or self._known

    def _choose(self, src_w: int, src_h: int) -> None:
        self._known = True
        if self.size is None:
            return
        w, h = self.size
        for k, flag in _REDUCED:
            if src_w // k >= w and src_h // k >= h:
                self._flag = flag
                return

    def decode(self, msg: Any) -> np.ndarray:
        if not self.compressed:
            return decode_image(msg)
        fmt = str(msg.format).strip().lower()
        if self._flag is not None and ("jpeg" in fmt or "jpg" in fmt) and "compresseddepth" not in fmt:
            data = msg.data if isinstance(msg.data, np.ndarray) else np.frombuffer(msg.data, np.uint8)
            img = cv2.imdecode(data, self._flag)  # always 3-channel 8-bit, in stored channel order
            if img is not None:
                stored = fmt.split("compressed", 1)[1].strip() if "compressed" in fmt else "bgr8"
                # Same channel-order rule as core.images.decode_compressed_image.
                return img if stored.startswith("rgb") else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            # fall through: the shared decoder produces the proper error message
        rgb = decode_compressed_image(msg)
        if not self._known:
            self._choose(rgb.shape[1], rgb.shape[0])
        return rgb


@dataclass
class _Item:
    ordinal: int
    msg: Any
    targets: list[Target]
    frame: Future[np.ndarray] | None = None  # decoded in the shared pool, or None: decode in order


def decode_pool(cameras: int, cores: int | None = None) -> ThreadPoolExecutor | None:
    """Threads that decode frames ahead of the camera workers, on machines with cores to spare.

    Each camera's worker encodes in order (H.264 is sequential); decoding is not, so with more
    cores than cameras the spare ones decode upcoming frames. None where every core is taken.
    ``cores``: what this conversion may use (all of the machine's unless bags convert in parallel).
    """
    spare = (cores or os.cpu_count() or 1) - cameras - 1  # one core reads the bag
    return ThreadPoolExecutor(max_workers=spare, thread_name_prefix="decode") if spare > 0 else None


@dataclass
class CameraWorker:
    """A thread that decodes and encodes one camera topic's selected frames in order."""

    bag_path: Path
    topic: str
    decoder: FrameDecoder
    pool: ThreadPoolExecutor | None = None
    inbox: queue.Queue[_Item | None] = field(default_factory=lambda: queue.Queue(maxsize=QUEUE_DEPTH))
    error: BaseException | None = None
    cancelled: bool = False
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"encode {self.topic}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self.inbox.get()
            if item is None:
                return
            if self.error is not None or self.cancelled:
                continue  # keep draining so the reader never blocks on a full queue
            try:
                rgb = item.frame.result() if item.frame is not None else self.decoder.decode(item.msg)
                for t in item.targets:
                    t.writer.write(rgb, t.repeat)
            except DatasetError as exc:
                self.error = DatasetError(f"{self.bag_path}: {self.topic} message #{item.ordinal}: {exc}")
            except Exception as exc:  # ImageDecodeError, cv2.error, av errors
                self.error = DatasetError(
                    f"{self.bag_path}: {self.topic} message #{item.ordinal}: {type(exc).__name__}: {exc}"
                )

    def put(self, ordinal: int, msg: Any, targets: list[Target]) -> None:
        if self.error is not None:
            raise self.error
        frame = self.pool.submit(self.decoder.decode, msg) if self.pool is not None and self.decoder.ready else None
        self.inbox.put(_Item(ordinal, msg, targets, frame))

    def stop(self, cancel: bool = False) -> None:
        """Finish (or, with ``cancel``, drop) the queued frames and join the thread."""
        self.cancelled = self.cancelled or cancel
        if self._thread is not None:
            self.inbox.put(None)
            self._thread.join()
            self._thread = None


def encode_selected(
    bag: Any,
    wanted: dict[str, dict[int, list[Target]]],
    decoders: dict[str, FrameDecoder],
    on_frame: Callable[[], None] | None = None,
    cores: int | None = None,
) -> None:
    """Read ``wanted``'s topics from ``bag`` (a :class:`~dreamzero_policy.data.bagio.Bag`) and encode.

    ``wanted[topic][ordinal]`` lists the targets of the topic's ``ordinal``-th message (0-based,
    bag order). Writers are neither closed nor aborted here; the caller owns them. Raises the first
    worker error, or the reader's :class:`BagReadError`.
    """
    pool = decode_pool(len(wanted), cores)
    workers = {t: CameraWorker(bag.path, t, decoders[t], pool) for t in wanted}
    for w in workers.values():
        w.start()
    ordinal = dict.fromkeys(wanted, -1)
    ok = False
    try:
        for conn, _, raw in bag.read(wanted):
            topic = conn.topic
            ordinal[topic] += 1
            targets = wanted[topic].get(ordinal[topic])
            if targets:  # frames off the grid are never deserialised or decoded
                workers[topic].put(ordinal[topic], bag.deserialize(raw, conn.msgtype), targets)
                if on_frame is not None:
                    on_frame()
        ok = True
    finally:
        for w in workers.values():
            w.stop(cancel=not ok)
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    for w in workers.values():
        if w.error is not None:
            raise w.error
