"""Several bags at once, one process each, joined into one dataset (``convert --jobs N``).

One conversion keeps only as many cores busy as its Python reading thread allows (README, data
pipeline), and a recording session is many bags. With ``jobs`` > 1, that many bags convert at the
same time in separate processes, each with its share of the cores: every bag becomes a complete
one-bag dataset in the staging folder (the ordinary converter). The parts are then joined in the
order the bags were given: episodes and tasks renumbered, videos moved, statistics computed over
the joined columns. The dataset equals a sequential conversion's (episodes, columns, videos,
statistics); the report adds ``jobs`` and its timings differ.

Failure rules are the sequential ones: the first failing bag (in the order given) fails the run
and nothing is published; with ``skip_bad_episodes``, rejected episodes are collected from every
part and the result is partial.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from tqdm import tqdm

from dreamzero_policy.core.errors import MappingError
from dreamzero_policy.data.allocators import use_lean_allocators
from dreamzero_policy.data.convert import (
    ConvertOptions,
    ConvertResult,
    NoEpisodeError,
    check_paths,
    conversion_report,
    convert,
    with_encoder_threads,
)
from dreamzero_policy.data.layout import DatasetWriter, sync_key, video_column, video_path
from dreamzero_policy.data.mapping import Mapping
from dreamzero_policy.data.reader import DatasetReader
from dreamzero_policy.data.stats import StatsAccumulator

Layout = tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int]], list[str], list[str]]


def convert_parallel(bags: Sequence[Path], mapping: Mapping, output: Path, opts: ConvertOptions) -> ConvertResult:
    """``convert(bags, ...)`` with ``opts.jobs`` bags converting at once."""
    paths = check_paths(bags, output)
    jobs = min(opts.jobs, len(paths))
    cores = max(1, (opts.cores or os.cpu_count() or 1) // jobs)
    mapping = with_encoder_threads(mapping, cores)  # what each worker uses, for the joined report
    part_opts = replace(opts, jobs=1, cores=cores, progress=False, overwrite=False)
    t_start = time.monotonic()
    writer = DatasetWriter(output.resolve(), mapping, overwrite=opts.overwrite)
    try:
        parts_dir = writer.stage / ".parts"
        bar = tqdm(total=len(paths), desc=f"bags ({jobs} at once)", unit="bag", disable=not opts.progress)
        # Spawned, not forked: the parent has threads (progress bar, pyarrow) a fork would copy mid-flight.
        # Each worker sets its allocators first thing, before the task's arguments import pyarrow.
        pool = ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=use_lean_allocators)
        with bar, pool:
            futures = [
                pool.submit(convert_part, bag, mapping, parts_dir / f"{i:06d}", part_opts)
                for i, bag in enumerate(paths)
            ]
            for future in futures:
                future.add_done_callback(lambda _f: bar.update(1))
            parts = _results_in_order(futures)
        skipped = [s for part in parts for s in part.skipped]
        if not any(part.root is not None for part in parts):
            raise NoEpisodeError(skipped, [b for part in parts for b in part.bags])
        report_extra = {"jobs": jobs, "cores_per_job": cores}
        report = _join(parts, mapping, writer, skipped, time.monotonic() - t_start, report_extra)
        shutil.rmtree(parts_dir)
        root = writer.publish()
    except BaseException:
        writer.abort()
        raise
    return ConvertResult(root, len(writer.episodes), writer.total_frames, skipped, report)


@dataclass(frozen=True)
class Part:
    """One bag's conversion: its dataset (None when it held no episode), rejected episodes, bag report."""

    root: Path | None
    skipped: list[dict[str, Any]]
    bags: list[dict[str, Any]]


def convert_part(bag: Path, mapping: Mapping, root: Path, opts: ConvertOptions) -> Part:
    """In a worker process: one bag into a one-bag dataset at ``root``."""
    try:
        result = convert([bag], mapping, root, opts)
    except NoEpisodeError as exc:  # fine for one bag of many: only a run without any episode fails
        return Part(None, exc.skipped, exc.bags)
    return Part(result.root, result.skipped, result.report["bags"])


def _results_in_order(futures: list[Future]) -> list[Any]:
    """Every result, in submission order; the first failure in that order is raised, the rest cancelled."""
    try:
        return [f.result() for f in futures]
    except BaseException:
        for f in futures:
            f.cancel()
        raise


def _join(
    parts: list[Part],
    mapping: Mapping,
    writer: DatasetWriter,
    skipped: list[dict],
    seconds: float,
    report_extra: dict[str, Any],
) -> dict[str, Any]:
    """Append every part's episodes to ``writer`` in order, write the meta files; return the report."""
    layout: Layout | None = None
    stats: StatsAccumulator | None = None
    sizes: dict[str, tuple[int, int]] = {}
    bag_reports: list[dict[str, Any]] = []
    episode_reports: list[dict[str, Any]] = []
    for p in parts:
        bag_reports += p.bags
        if p.root is None:
            continue
        root, part = p.root, DatasetReader(p.root)
        if layout is None:
            layout = _layout(part)
            pairs = mapping.relative_action.items()
            relative = {a: (slice(*layout[1][a]), slice(*layout[0][s])) for a, s in pairs}
            stats = StatsAccumulator(relative, mapping.action_horizon, writer.stage / ".stats")
        elif _layout(part) != layout:
            bag = part.report["bags"][0]["bag"]
            raise MappingError(f"{bag}: column widths differ from the first bag ({layout}); check names/indices")
        assert stats is not None
        sizes.update(_video_sizes(part))
        renumbered: dict[int, int] = {}
        for i, meta in enumerate(part.episodes):
            columns = part.episode(i).columns
            new = len(writer.episodes)
            state, action = columns.get("observation.state"), columns.get("action")
            sync = {sync_key(k): v for k, v in columns.items() if k.startswith("sync.")}
            extra = {k: v for k, v in meta.items() if k not in ("episode_index", "tasks", "length")}
            writer.write_episode(new, meta["tasks"][0], state, action, sync, extra)
            stats.add(state, None if meta.get("video_only") else action)
            for key in part.video_keys:
                target = video_path(writer.stage, new, key)
                target.parent.mkdir(parents=True, exist_ok=True)
                video_path(root, meta["episode_index"], key).rename(target)
            renumbered[meta["episode_index"]] = new
        episode_reports += [{**e, "episode_index": renumbered[e["episode_index"]]} for e in part.report["episodes"]]
        shutil.rmtree(root)  # its videos have moved; free the disk as the join goes
    assert layout is not None and stats is not None
    stat_values, relative_values = stats.finish()
    report = conversion_report(mapping, bag_reports, episode_reports, skipped, seconds, **report_extra)
    writer.write_meta(*layout, sizes, stat_values, relative_values, report)
    return report


def _layout(part: DatasetReader) -> Layout:
    """Column slices and names of a part, as ``plan.column_layout`` gave them to its writer."""
    feats = part.info["features"]

    def slices(group: str) -> dict[str, tuple[int, int]]:
        return {k: (int(v["start"]), int(v["end"])) for k, v in part.modality.get(group, {}).items()}

    def names(column: str) -> list[str]:
        return list(feats[column]["names"]) if column in feats else []

    return slices("state"), slices("action"), names("observation.state"), names("action")


def _video_sizes(part: DatasetReader) -> dict[str, tuple[int, int]]:
    shapes = {k: part.info["features"][video_column(k)]["shape"] for k in part.video_keys}
    return {k: (int(s[1]), int(s[0])) for k, s in shapes.items()}
