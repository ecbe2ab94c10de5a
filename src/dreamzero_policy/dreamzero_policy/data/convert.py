"""Bags -> dataset: frames and rows aligned to the fps grid, H.264 video, parquet, meta, published atomically.

A bag that is one episode is converted in the same read that indexes it (``live.py``): frames go
to the encoders and rows to a disk spill as the grid advances, so memory is flat in bag length.
Other bags, and whatever the single pass hands back, take the two-pass path: pass 1 indexes
stamps and low-dim values, ``plan.py`` plans each episode, pass 2 streams the selected frames
(``encode.py``). Any error (corrupt bag, gap beyond tolerance, bad image) aborts the whole run and
removes the staging directory, unless ``skip_bad_episodes`` is set, in which case rejected
*episodes* are reported and the result is marked partial (exit code 3), never success. Input
bags are only ever opened read-only. With ``jobs`` > 1, bags convert in worker processes and are
joined into the same dataset (``parallel.py``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from dreamzero_policy.core.errors import AlignmentError, BagReadError, DatasetError, MappingError
from dreamzero_policy.data.bagio import Bag, make_typestore
from dreamzero_policy.data.encode import FrameDecoder, Target, encode_selected
from dreamzero_policy.data.episodes import EpisodeWindow, from_instruction_topic, from_run_task, resolve_instruction
from dreamzero_policy.data.index import BagIndex, build_index
from dreamzero_policy.data.layout import DatasetWriter, video_path
from dreamzero_policy.data.live import LiveConversion, LiveEpisode
from dreamzero_policy.data.mapping import Mapping
from dreamzero_policy.data.plan import EpisodePlan, column_layout, missing_actions_reason, plan_episode
from dreamzero_policy.data.stats import StatsAccumulator
from dreamzero_policy.data.video import VideoWriter

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


class NoEpisodeError(AlignmentError):
    """Every episode was rejected (or the bags held none); ``skipped`` says why, episode by episode,
    and ``bags`` holds the report of each bag read."""

    def __init__(self, skipped: list[dict[str, Any]], bags: list[dict[str, Any]] | None = None) -> None:
        reasons = f"; skipped: {[s['reason'] for s in skipped]}" if skipped else ""
        super().__init__("no episode could be converted" + reasons)
        self.skipped, self.bags = skipped, bags or []


@dataclass
class ConvertOptions:
    overwrite: bool = False
    skip_bad_episodes: bool = False
    instruction: str | None = None  # overrides every episode's instruction
    progress: bool = True
    msg_dirs: Sequence[Path] = ()
    single_pass: bool = True  # convert a one-episode bag in the read that indexes it (see live.py)
    jobs: int = 1  # bags converted at once, each in its own process (see parallel.py)
    cores: int | None = None  # cores this conversion may use (None: the machine's)


@dataclass
class ConvertResult:
    root: Path
    episodes: int
    frames: int
    skipped: list[dict[str, Any]] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_PARTIAL if self.skipped else EXIT_OK


def episode_windows(index: BagIndex, mapping: Mapping) -> list[EpisodeWindow]:
    split = mapping.episodes.split
    if split == "instruction_topic":
        return from_instruction_topic(index.episode_events, mapping.episodes.end_values)
    if split == "run_task":
        return from_run_task(index.status_events)
    return [EpisodeWindow(None, None, None)]


def _plan_episodes(
    index: BagIndex, mapping: Mapping, bag_path: Path, first: int, opts: ConvertOptions, skipped: list[dict[str, Any]]
) -> list[tuple[int, EpisodePlan]]:
    """Plan every episode of one bag, numbered from ``first``; a rejected one raises or is skipped."""
    plans: list[tuple[int, EpisodePlan]] = []
    for window in episode_windows(index, mapping):
        try:
            text = resolve_instruction(window, mapping, bag_path, index.instruction_events, opts.instruction)
            plan = plan_episode(index, mapping, window, text)
        except AlignmentError as exc:
            if not opts.skip_bad_episodes:
                raise AlignmentError(f"{bag_path}: episode [{window.start_ns}, {window.end_ns}): {exc}") from exc
            skipped.append(
                {"bag": str(bag_path), "start_ns": window.start_ns, "end_ns": window.end_ns, "reason": str(exc)}
            )
            continue
        plans.append((first + len(plans), plan))
    return plans


def make_decoders(mapping: Mapping, bag: Bag) -> dict[str, FrameDecoder]:
    """One decoder per camera topic; two keys sharing a camera decode once, for the larger size."""
    topics = bag.topics()
    decoders: dict[str, FrameDecoder] = {}
    for topic in {v.topic for v in mapping.video}:
        sizes_of = [(v.width, v.height) if v.width and v.height else None for v in mapping.video if v.topic == topic]
        known = [wh for wh in sizes_of if wh is not None]
        size = None if len(known) < len(sizes_of) else (max(w for w, _ in known), max(h for _, h in known))
        decoders[topic] = FrameDecoder(topics[topic].msgtype.endswith("CompressedImage"), size)
    return decoders


def _live(bag: Bag, mapping: Mapping, episode: int, stage: Path, opts: ConvertOptions) -> LiveConversion | None:
    """The single pass, where it applies: one bag = one episode, every camera present."""
    topics = bag.topics()
    if not opts.single_pass or mapping.episodes.split != "bag" or any(v.topic not in topics for v in mapping.video):
        return None
    return LiveConversion(bag, mapping, episode, stage, make_decoders(mapping, bag), opts.cores)


def _index(bag: Bag, mapping: Mapping, opts: ConvertOptions, live: LiveConversion | None) -> BagIndex:
    with tqdm(
        total=bag.expected_count(_index_topics(mapping)),
        desc=f"{bag.path.name}: " + ("index + video" if live is not None else "index"),
        unit="msg",
        disable=not opts.progress,
        leave=False,
    ) as bar:
        try:
            return build_index(bag, mapping, bar.update, live)
        except DatasetError as exc:  # a series' own errors name the topic; say which bag too
            if str(bag.path) in str(exc):
                raise
            raise type(exc)(f"{bag.path}: {exc}") from exc


def _write_live_episode(
    writer: DatasetWriter,
    stats: StatsAccumulator,
    episode: LiveEpisode,
    index: BagIndex,
    mapping: Mapping,
    bag_path: Path,
    opts: ConvertOptions,
    action_width: int,
) -> dict[str, Any]:
    """Write the single read's episode (parquet row groups from the spill, statistics); return its report."""
    window = EpisodeWindow(None, None, None)
    text = resolve_instruction(window, mapping, bag_path, index.instruction_events, opts.instruction)
    extra = _episode_extra(bag_path, episode.grid_start, episode.grid_end, window)
    if episode.video_only:
        extra["video_only"] = True
        extra["video_only_reason"] = missing_actions_reason(index)
    ep = len(writer.episodes)
    writer.write_episode_blocks(ep, text, episode.blocks(action_width), extra)
    stats.add_blocks((st, None if episode.video_only else ac) for st, ac, _ in episode.blocks(action_width))
    episode.remove()
    return {
        "episode_index": ep,
        **extra,
        "frames": episode.length,
        **episode.coverage,
        "streams": [r.as_dict() for r in episode.reports],
    }


def _episode_extra(bag_path: Path, start_ns: int, end_ns: int, window: EpisodeWindow) -> dict[str, Any]:
    extra: dict[str, Any] = {"video_only": False, "source_bag": str(bag_path), "start_ns": start_ns, "end_ns": end_ns}
    if window.outcome:
        extra["outcome"] = window.outcome
    return extra


def _no_live_reason(mapping: Mapping, opts: ConvertOptions) -> str:
    return "single pass turned off" if not opts.single_pass else "single pass needs episodes.split: bag"


def _encode_videos(
    bag: Bag, mapping: Mapping, plans: list[tuple[int, EpisodePlan]], stage: Path, opts: ConvertOptions
) -> dict[str, tuple[int, int]]:
    """Pass 2: stream the selected camera frames into one H.264 writer per (episode, camera)."""
    wanted: dict[str, dict[int, list[Target]]] = {}
    writers: list[tuple[str, VideoWriter, int]] = []
    for ep, plan in plans:
        for v in mapping.video:
            size = (v.width, v.height) if v.width and v.height else None
            w = VideoWriter(video_path(stage, ep, v.key), mapping.fps, mapping.video_encoding, size)
            writers.append((v.key, w, plan.length))
            ordinals, counts = np.unique(plan.frames[v.key], return_counts=True)
            per_topic = wanted.setdefault(v.topic, {})
            for o, c in zip(ordinals.tolist(), counts.tolist(), strict=True):
                per_topic.setdefault(o, []).append(Target(w, c))
    decoders = make_decoders(mapping, bag)
    total = sum(len(m) for m in wanted.values())
    sizes: dict[str, tuple[int, int]] = {}
    try:
        bar = tqdm(total=total, desc=f"{bag.path.name}: video", unit="frame", disable=not opts.progress, leave=False)
        with bar:
            encode_selected(bag, wanted, decoders, lambda: bar.update(1), opts.cores)
        for key, w, expected in writers:
            w.close()
            if w.frames != expected:
                raise DatasetError(f"{w.path.name}: wrote {w.frames} frames, expected {expected}")
            if w.frame_size is not None:
                sizes[key] = w.frame_size
    except BaseException:
        for _, w, _ in writers:
            w.abort()
        raise
    return sizes


def convert(
    bags: Sequence[Path], mapping: Mapping, output: Path, options: ConvertOptions | None = None
) -> ConvertResult:
    """Convert ``bags`` into a dataset at ``output``. Raises a DatasetError subclass on failure."""
    opts = options or ConvertOptions()
    if opts.jobs < 1:
        raise MappingError(f"jobs must be >= 1, got {opts.jobs}")
    if opts.jobs > 1 and len(bags) > 1:
        from dreamzero_policy.data.parallel import convert_parallel  # imports this module

        return convert_parallel(bags, mapping, output, opts)
    threads = cv2.getNumThreads()
    # Work is already spread over the camera workers and the decode pool; OpenCV's own thread
    # pool inside each small resize/colour conversion only adds contention on many-core machines.
    cv2.setNumThreads(1)
    try:
        return _convert(bags, mapping, output, opts)
    finally:
        cv2.setNumThreads(threads)


def _convert(bags: Sequence[Path], mapping: Mapping, output: Path, opts: ConvertOptions) -> ConvertResult:
    bags = check_paths(bags, output)
    out = output.resolve()
    typestore = make_typestore(opts.msg_dirs)
    mapping = with_encoder_threads(mapping, opts.cores)
    writer = DatasetWriter(out, mapping, overwrite=opts.overwrite)
    t_start = time.monotonic()
    try:
        stats: StatsAccumulator | None = None
        layout = None
        episode_reports: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        bag_reports: list[dict[str, Any]] = []
        sizes: dict[str, tuple[int, int]] = {}
        for bag_path in bags:
            with Bag(bag_path, typestore) as bag:
                live = _live(bag, mapping, len(writer.episodes), writer.stage, opts)
                try:
                    index = _index(bag, mapping, opts, live)
                    bag_reports.append(
                        {
                            "bag": str(bag_path),
                            "reader": "mcap (streamed)" if bag.streamed else "rosbags",
                            "event_times": index.event_clock,
                            "topics": {t: {"type": ty, "count": c} for t, (ty, c) in index.topics.items()},
                        }
                    )
                    if layout is None:
                        layout = column_layout(mapping, index)
                        pairs = mapping.relative_action.items()
                        stats = StatsAccumulator(
                            {a: (slice(*layout[1][a]), slice(*layout[0][s])) for a, s in pairs},
                            mapping.action_horizon,
                            writer.stage / ".stats",
                        )
                    elif column_layout(mapping, index) != layout:
                        raise MappingError(
                            f"{bag_path}: column widths differ from the first bag ({layout}); check names/indices"
                        )
                    assert stats is not None
                    episode = live.finish() if live is not None else None
                    if episode is not None:
                        bag_reports[-1]["video_pass"] = "single (video and rows streamed while indexing)"
                        sizes.update(episode.sizes)
                        width = sum(end - start for start, end in layout[1].values())
                        episode_reports.append(
                            _write_live_episode(writer, stats, episode, index, mapping, bag_path, opts, width)
                        )
                        continue
                    why = live.abandoned if live is not None else _no_live_reason(mapping, opts)
                    bag_reports[-1]["video_pass"] = f"second ({why})"
                    if live is not None:  # the single pass kept no samples: index the bag again
                        index = _index(bag, mapping, opts, None)
                    plans = _plan_episodes(index, mapping, bag_path, len(writer.episodes), opts, skipped)
                    sizes.update(_encode_videos(bag, mapping, plans, writer.stage, opts))
                except BaseException:
                    if live is not None:
                        live.discard()
                    raise
                for ep, plan in plans:
                    extra = _episode_extra(bag_path, int(plan.grid[0]), int(plan.grid[-1]), plan.window)
                    if plan.video_only_reason:
                        extra["video_only"] = True
                        extra["video_only_reason"] = plan.video_only_reason
                    writer.write_episode(ep, plan.instruction, plan.state, plan.action, plan.sync, extra)
                    stats.add(plan.state, None if plan.video_only_reason else plan.action)
                    episode_reports.append(
                        {
                            "episode_index": ep,
                            **extra,
                            "frames": plan.length,
                            **plan.coverage,
                            "streams": [r.as_dict() for r in plan.reports],
                        }
                    )
        if not writer.episodes:
            raise NoEpisodeError(skipped, bag_reports)
        assert layout is not None and stats is not None
        stat_values, relative = stats.finish()
        report = conversion_report(mapping, bag_reports, episode_reports, skipped, time.monotonic() - t_start)
        writer.write_meta(layout[0], layout[1], layout[2], layout[3], sizes, stat_values, relative, report)
        root = writer.publish()
    except BaseException:
        writer.abort()
        raise
    return ConvertResult(root, len(writer.episodes), writer.total_frames, skipped, report)


def check_paths(bags: Sequence[Path], output: Path) -> list[Path]:
    """The bags as paths; MappingError when there are none or the output lies inside one."""
    paths = [Path(b) for b in bags]
    if not paths:
        raise MappingError("no input bags given")
    out = output.resolve()
    for b in paths:
        br = b.resolve()
        if out == br or br in out.parents:
            raise MappingError(f"output {out} is inside input bag {br}; bags are never modified")
    return paths


def with_encoder_threads(mapping: Mapping, cores: int | None) -> Mapping:
    """``mapping`` with ``video_encoding.threads: auto`` made a number for its cameras and ``cores``."""
    cameras = len({v.topic for v in mapping.video})
    return replace(mapping, video_encoding=mapping.video_encoding.for_cameras(cameras, cores))


def conversion_report(
    mapping: Mapping,
    bags: list[dict[str, Any]],
    episodes: list[dict[str, Any]],
    skipped: list[dict[str, Any]],
    seconds: float,
    **extra: Any,
) -> dict[str, Any]:
    """``meta/conversion_report.json``: what was read, what each episode holds, what was left out."""
    return {
        "mapping": mapping.name,
        "fps": mapping.fps,
        "align_tolerance_s": mapping.tolerance_s,
        "encoder_threads_per_camera": mapping.video_encoding.threads,
        **extra,
        "bags": bags,
        "episodes": episodes,
        "skipped_episodes": skipped,
        "status": "partial" if skipped else "complete",
        "seconds": round(seconds, 3),
    }


def _index_topics(mapping: Mapping) -> set[str]:
    topics = {v.topic for v in mapping.video} | {s.topic for s in mapping.state}
    topics |= {a.stream.topic for a in mapping.action if a.stream}
    topics |= {t for t in (mapping.instruction.topic, mapping.episodes.topic) if t}
    return topics


__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_USAGE",
    "BagReadError",
    "ConvertOptions",
    "ConvertResult",
    "NoEpisodeError",
    "convert",
]
