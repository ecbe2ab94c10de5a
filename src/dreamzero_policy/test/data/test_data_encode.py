"""Pass 2 (threaded per-camera decode + H.264 encode): reduced JPEG decode, errors, encoder settings."""

from __future__ import annotations

import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from dreamzero_policy.core.errors import DatasetError, MappingError
from dreamzero_policy.core.images import decode_compressed_image
from dreamzero_policy.data.bagio import make_typestore
from dreamzero_policy.data.convert import ConvertOptions, convert
from dreamzero_policy.data.encode import FrameDecoder
from dreamzero_policy.data.mapping import VideoEncoding, mapping_from_dict
from dreamzero_policy.data.synth import T0_NS, Camera, SynthSpec, mapping_dict, write_bag
from dreamzero_policy.data.video import VideoWriter, read_video
from rosbags.rosbag2 import Writer

QUIET = ConvertOptions(progress=False)


def _textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    small = np.random.default_rng(seed).integers(0, 255, (h // 16, w // 16, 3), np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _jpeg_msg(rgb: np.ndarray, fmt: str = "jpeg") -> object:
    ts = make_typestore()
    T = ts.types
    _ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="")
    return T["sensor_msgs/msg/CompressedImage"](header=header, format=fmt, data=buf.reshape(-1))


@pytest.mark.parametrize("fmt", ["jpeg", "bgr8; jpeg compressed bgr8"])
def test_data_encode_reduced_jpeg_decode_matches_full_decode_and_resize(fmt: str) -> None:
    rgb = _textured(480, 640)
    msg = _jpeg_msg(rgb, fmt)
    dec = FrameDecoder(compressed=True, size=(160, 120))
    first = dec.decode(msg)  # full decode by the shared decoder; learns the source size
    np.testing.assert_array_equal(first, decode_compressed_image(msg))
    assert dec._flag == cv2.IMREAD_REDUCED_COLOR_4
    reduced = dec.decode(msg)
    assert reduced.shape == (120, 160, 3)
    expect = cv2.resize(decode_compressed_image(msg), (160, 120), interpolation=cv2.INTER_AREA)
    diff = np.abs(reduced.astype(int) - expect.astype(int))
    assert diff.mean() < 2.0 and np.percentile(diff, 99) < 12  # same colours (channel order kept)
    # Output as large as the source: no reduced decode.
    same = FrameDecoder(compressed=True, size=(640, 480))
    same.decode(msg)
    assert same._flag is None


def _bag_with_bad_frame(path: Path, bad: int) -> None:
    ts = make_typestore()
    T = ts.types
    with Writer(path, version=9) as w:
        cam = w.add_connection("/cam/image/compressed", "sensor_msgs/msg/CompressedImage", typestore=ts)
        js = w.add_connection("/joint_states", "sensor_msgs/msg/JointState", typestore=ts)
        for k in range(31):
            t = T0_NS + k * 66_666_667
            hdr = T["std_msgs/msg/Header"](
                stamp=T["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=t % 10**9), frame_id=""
            )
            q = np.array([np.sin(k / 10)])
            state = T["sensor_msgs/msg/JointState"](
                header=hdr, name=["j1"], position=q, velocity=np.zeros(1), effort=np.zeros(0)
            )
            w.write(js, t, ts.serialize_cdr(state, "sensor_msgs/msg/JointState"))
            _ok, buf = cv2.imencode(".jpg", _textured(48, 64, k))
            data = np.frombuffer(b"\xff\xd8not a jpeg", np.uint8) if k == bad else buf.reshape(-1)
            img = T["sensor_msgs/msg/CompressedImage"](header=hdr, format="jpeg", data=data)
            w.write(cam, t + 1000, ts.serialize_cdr(img, "sensor_msgs/msg/CompressedImage"))


def test_data_encode_corrupt_frame_names_topic_and_message_and_publishes_nothing(tmp_path: Path) -> None:
    _bag_with_bad_frame(tmp_path / "bag", bad=17)
    mapping = mapping_from_dict(
        {
            "name": "bad",
            "fps": 15,
            "video": {"cam": "/cam/image/compressed"},
            "state": {"q": {"topic": "/joint_states", "names": ["j1"]}},
            "action": {"q": {"next_state": "q"}},
            "instruction": {"text": "t"},
        }
    )
    with pytest.raises(DatasetError, match=r"/cam/image/compressed message #17: .*could not be decoded"):
        convert([tmp_path / "bag"], mapping, tmp_path / "ds", QUIET)
    assert not (tmp_path / "ds").exists()
    assert not any(p.name.startswith(".") or "ds" in p.name for p in tmp_path.iterdir() if p.name != "bag")


def _keyframes(path: Path, fps: float = 15.0) -> list[int]:
    """Display indices of the keyframes (packets come in decode order when there are B-frames)."""
    with av.open(str(path)) as c:
        tb = c.streams.video[0].time_base
        return sorted(round(float(p.pts * tb) * fps) for p in c.demux(video=0) if p.size and p.is_keyframe)


def test_data_encode_settings_reach_the_encoder(tmp_path: Path) -> None:
    spec = SynthSpec(duration_s=2.0, seed=1)
    write_bag(tmp_path / "bag", spec)
    for name, enc, step in (("default", {}, 8), ("custom", {"tune": None, "gop": 5, "crf": 23}, 5)):
        m = mapping_from_dict(mapping_dict(spec, video_encoding=enc))
        convert([tmp_path / "bag"], m, tmp_path / name, QUIET)
        (video,) = (tmp_path / name).rglob("*.mp4")
        keys = _keyframes(video)
        assert keys[:3] == [0, step, 2 * step]
    with pytest.raises(MappingError, match="crf"):
        mapping_from_dict(mapping_dict(spec, video_encoding={"crf": 60}))
    with pytest.raises(MappingError, match="did you mean 'tune'"):
        mapping_from_dict(mapping_dict(spec, video_encoding={"tunes": "film"}))


def _x264_options(path: Path) -> dict[str, str]:
    """The settings x264 itself wrote into the stream (its SEI message in the first frame)."""
    data = path.read_bytes()
    start = data.index(b"options: ") + len(b"options: ")
    return dict(o.split("=", 1) for o in data[start : data.index(b"\x00", start)].decode().split())


def test_data_encode_auto_threads_share_the_spare_cores_among_cameras() -> None:
    auto = VideoEncoding()
    assert auto.threads == "auto"
    assert auto.for_cameras(3, cores=2).threads == 1  # a small machine: one encoder thread per camera
    assert auto.for_cameras(3, cores=16).threads == 5  # 15 cores beside the reading thread, 3 cameras
    assert auto.for_cameras(1, cores=16).threads == 15
    assert auto.for_cameras(0, cores=1).threads == 1
    for fixed in (0, 1, 6):
        assert VideoEncoding(threads=fixed).for_cameras(3, cores=64).threads == fixed
    for bad in ("fast", "4", -1, True, 2.5):
        with pytest.raises(MappingError, match="threads must be 'auto' or a number"):
            VideoEncoding(threads=bad)  # type: ignore[arg-type]


def test_data_encode_auto_threads_reach_x264_and_the_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # x264 keeps at least two macroblock rows a thread, so the frames must be tall enough to slice.
    spec = SynthSpec(duration_s=1.0, cameras=(Camera("/cam/image_raw", width=320, height=240),), seed=3)
    write_bag(tmp_path / "bag", spec)
    m = mapping_from_dict(mapping_dict(spec))
    cameras = len({v.topic for v in m.video})
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    single = convert([tmp_path / "bag"], m, tmp_path / "one", QUIET)
    monkeypatch.setattr("os.cpu_count", lambda: 1 + 4 * cameras)  # 4 threads a camera
    sliced = convert([tmp_path / "bag"], m, tmp_path / "many", QUIET)
    assert single.report["encoder_threads_per_camera"] == 1
    assert sliced.report["encoder_threads_per_camera"] == 4
    ones, manys = sorted((tmp_path / "one").rglob("*.mp4")), sorted((tmp_path / "many").rglob("*.mp4"))
    assert len(ones) == len(manys) == len(m.video)
    for one, many in zip(ones, manys, strict=True):
        assert _x264_options(one)["threads"] == "1"
        assert int(_x264_options(many)["threads"]) > 1 and _x264_options(many)["sliced_threads"] == "1"
        a, b = read_video(one), read_video(many)
        assert a.shape == b.shape  # every frame, at the same size
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 2.0  # slices change the bits, not the picture


def test_decode_pool_only_gets_frames_whose_decode_does_not_depend_on_order(tmp_path: Path) -> None:
    # The first JPEG of a resized camera is decoded in full to learn the source size; later ones
    # at reduced DCT scale. Sent to the pool before that, a frame's pixels would depend on timing.
    from concurrent.futures import ThreadPoolExecutor

    from dreamzero_policy.data.encode import CameraWorker, Target
    from dreamzero_policy.data.mapping import VideoEncoding
    from dreamzero_policy.data.video import VideoWriter, read_video

    class CountingPool(ThreadPoolExecutor):
        submitted = 0

        def submit(self, *args: object, **kwargs: object):  # type: ignore[override]
            CountingPool.submitted += 1
            return super().submit(*args, **kwargs)

    ts = make_typestore()
    msgs = []
    for i in range(6):
        _ok, buf = cv2.imencode(".jpg", _textured(96, 128, seed=i), [cv2.IMWRITE_JPEG_QUALITY, 95])
        msgs.append(ts.types["sensor_msgs/msg/CompressedImage"](header=None, format="jpeg", data=buf.reshape(-1)))
    decoder = FrameDecoder(True, (32, 24))
    assert not decoder.ready and FrameDecoder(True, None).ready and FrameDecoder(False, (32, 24)).ready
    pool = CountingPool(max_workers=4)
    writer = VideoWriter(tmp_path / "v.mp4", 15.0, VideoEncoding(), (32, 24))
    worker = CameraWorker(tmp_path, "/cam", decoder, pool)
    worker.put(0, msgs[0], [Target(writer, 1)])  # not started yet: nothing can have been decoded
    assert CountingPool.submitted == 0
    worker.start()
    deadline = time.monotonic() + 30
    while not decoder.ready and time.monotonic() < deadline:  # the worker decodes frame 0 in order
        time.sleep(0.001)
    assert decoder.ready, worker.error
    for i, m in enumerate(msgs[1:], 1):
        worker.put(i, m, [Target(writer, 1)])
    worker.stop()
    pool.shutdown()
    writer.close()
    assert worker.error is None and CountingPool.submitted == 5
    frames = read_video(tmp_path / "v.mp4")
    assert frames.shape == (6, 24, 32, 3)


@pytest.mark.parametrize("size", [(320, 240), (50, 30), (642, 482)])
def test_video_writer_puts_every_plane_in_place_at_any_row_padding(tmp_path: Path, size: tuple[int, int]) -> None:
    # The writer copies cv2's I420 into the frame's planes itself; widths like 50 and 642 give
    # planes padded beyond the image width. At CRF 0 x264 is lossless, so the decoded planes must
    # equal cv2's conversion of each input frame exactly, and differ between frames.
    w, h = size
    rng = np.random.default_rng(w)
    frames = [cv2.resize(rng.integers(0, 255, (h // 2, w // 2, 3), np.uint8), (w, h)) for _ in range(3)]
    writer = VideoWriter(tmp_path / "v.mp4", 15.0, VideoEncoding(crf=0, gop=1))
    for rgb in frames:
        writer.write(rgb)
    writer.close()
    with av.open(str(tmp_path / "v.mp4")) as container:
        decoded = [f.to_ndarray(format="yuv420p") for f in container.decode(video=0)]
    assert len(decoded) == 3
    for rgb, got in zip(frames, decoded, strict=True):
        np.testing.assert_array_equal(got, cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420))
    assert not np.array_equal(decoded[0], decoded[1])
