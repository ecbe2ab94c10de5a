"""``dreamzero data``: convert rosbags into a DreamZero training dataset, or inspect them.

Wired in ``dreamzero_policy/cli.py``; exposes ``add_arguments(parser)`` and ``run(args) -> int``.
Exit codes: 0 success, 1 conversion failed (corrupt/truncated bag, gap beyond tolerance, bad
image; nothing written), 2 usage or mapping error, 3 partial (``--skip-bad-episodes`` skipped
some episodes; the dataset was written and the skips are in meta/conversion_report.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from collections import Counter
from pathlib import Path

from dreamzero_policy.core.errors import DatasetError, MappingError

EPILOG = """\
examples:
  dreamzero data convert rosbag2_2025_01_01 --mapping droid_franka --output ~/data/droid_ft
  dreamzero data convert recordings/ --mapping config/datasets/yam.yaml --output out --overwrite
  dreamzero data convert recordings/ --mapping droid_franka --output out --jobs 8   # 8 bags at once
  dreamzero data inspect rosbag2_2025_01_01 --mapping droid_franka --plots plots/
  dreamzero data inspect ~/data/droid_ft
  dreamzero data inspect rosbag2_2025_01_01 --starter-mapping config/datasets/my_robot.yaml

A BAG argument is a rosbag2 directory (metadata.yaml + .mcap or .db3; Humble or Jazzy; an
interrupted recording without metadata.yaml is read from its single file), a .mcap/.db3 file, or a
folder whose sub-directories are bags (one episode each with episodes.split: bag). Mappings are
YAML files in config/datasets/ (name or path); see config/datasets/README for the schema.
Frames are aligned on header stamps to the mapping's fps (nearest sample); a stream whose nearest
sample is farther than align_tolerance_s (default half a period) makes the episode fail unless
--skip-bad-episodes. The output is staged and only appears when complete; bags are read-only.
exit codes: 0 ok, 1 conversion failed, 2 usage/mapping error, 3 partial (episodes skipped)
"""


def _repo_config_dir() -> Path:
    return Path(__file__).resolve().parents[4] / "config" / "datasets"


def resolve_mapping(arg: str) -> Path:
    """A mapping path, or a name looked up as ``config/datasets/<name>.yaml``."""
    p = Path(arg).expanduser()
    if p.is_file():
        return p
    candidate = _repo_config_dir() / f"{arg}.yaml"
    if candidate.is_file():
        return candidate
    known = sorted(f.stem for f in _repo_config_dir().glob("*.yaml")) if _repo_config_dir().is_dir() else []
    raise MappingError(f"mapping '{arg}' not found (not a file; known names: {known})")


def _is_bag(p: Path) -> bool:
    if p.is_file():
        return p.suffix in (".mcap", ".db3")
    if not p.is_dir():
        return False
    if (p / "metadata.yaml").is_file():
        return True
    # An interrupted recording has no metadata.yaml; rosbag2 names its files <dir>_<k>.mcap or .db3.
    # Such a directory is one bag (bagio opens its single file or says how to rebuild the metadata),
    # never silently skipped; other files are bags of their own.
    return any(re.fullmatch(rf"{re.escape(p.name)}(_\d+)?\.(mcap|db3)", c.name) for c in p.iterdir())


def find_bags(paths: list[str]) -> list[Path]:
    """Expand each argument into bag directories (sorted); raises MappingError if one has none."""
    bags: list[Path] = []
    for arg in paths:
        p = Path(arg).expanduser()
        if _is_bag(p):
            bags.append(p)
            continue
        subs = sorted(c for c in p.iterdir() if _is_bag(c)) if p.is_dir() else []
        if not subs:
            raise MappingError(f"{p}: not a rosbag2 directory (no metadata.yaml) and contains no bags")
        bags += subs
    return bags


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    sub = parser.add_subparsers(dest="data_command", metavar="{convert,inspect}")
    conv = sub.add_parser(
        "convert",
        help="convert bags into a GEAR/LeRobot v2.1 dataset",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    conv.add_argument("bags", nargs="+", help="rosbag2 directories (MCAP or sqlite3) or folders of bags")
    conv.add_argument("--mapping", "-m", required=True, help="mapping YAML path or name in config/datasets/")
    conv.add_argument("--output", "-o", required=True, type=Path, help="dataset directory to create")
    conv.add_argument(
        "--overwrite", action="store_true", help="replace an existing dataset (only once the new one is complete)"
    )
    conv.add_argument(
        "--skip-bad-episodes",
        action="store_true",
        help="skip episodes with gaps/too few frames instead of failing; exit code 3 if any were skipped",
    )
    conv.add_argument("--instruction", help="language instruction for every episode (overrides the mapping)")
    conv.add_argument("--fps", type=float, help="override the mapping's dataset fps")
    conv.add_argument("--tolerance", type=float, help="override align_tolerance_s (seconds)")
    conv.add_argument(
        "--msg-dir",
        action="append",
        type=Path,
        default=[],
        help="extra directory of dreamzero_msgs .msg files (for bags without embedded definitions)",
    )
    conv.add_argument("--no-progress", action="store_true", help="hide progress bars")
    conv.add_argument(
        "--jobs",
        "-j",
        type=_positive_int,
        default=1,
        metavar="N",
        help="convert N bags at once, each in its own process with its share of the cores (default 1); the "
        "dataset is the same as with one, peak memory is about N times one conversion's (~170 MB)",
    )
    conv.add_argument(
        "--two-pass",
        action="store_true",
        help="always read each bag twice (index and plan, then video) instead of converting one-episode "
        "bags in a single read; the output is the same, this is for troubleshooting",
    )
    insp = sub.add_parser("inspect", help="topics, rates, gaps, drops, episode lengths and plots of a bag or dataset")
    insp.add_argument("path", type=Path, help="a rosbag2 directory, a folder of them, or a converted dataset")
    insp.add_argument("--mapping", "-m", help="also show the episodes this mapping would produce")
    insp.add_argument("--plots", type=Path, help="write PNG plots (joint trajectories, message timing) here")
    insp.add_argument("--json", action="store_true", help="print the full report as JSON")
    insp.add_argument(
        "--starter-mapping",
        type=Path,
        metavar="YAML",
        help="write a mapping guessed from the bag (cameras, joints, rate) to start from; notes at its top",
    )


def _lost_data(episode: dict) -> list[tuple[str, float, str]]:
    """(before | after, seconds, which stream set that end) where an episode leaves out more than the warning limit."""
    from dreamzero_policy.data.plan import LOST_WARNING_S

    out = []
    for side, topic_key in (("before", "started_last"), ("after", "ended_first")):
        lost = episode.get(f"lost_{side}_s", 0.0)
        if lost > LOST_WARNING_S:
            out.append((side, lost, f"{episode[topic_key]} {topic_key.replace('_', ' ')}"))
    return out


def _print_bag_report(rep: dict) -> None:
    print(f"bag {rep['bag']}")
    for topic, t in rep["topics"].items():
        rate = f"{t['rate_hz']:8.2f} Hz" if "rate_hz" in t else "       - Hz"
        print(
            f"  {topic:40s} {t['type']:38s} n={t['count']:<6d} {rate}  gaps={t.get('gaps', 0)} "
            f"drops~{t.get('dropped_estimate', 0)} backwards={t.get('backwards', 0)} time: {t['time_source']}"
        )
    for i, ep in enumerate(rep.get("episodes", [])):
        status = ep.get("error") or f"{ep['frames']} frames, '{ep['instruction']}'" + (
            " (video only)" if ep["video_only"] else ""
        )
        for side, lost, why in _lost_data(ep):
            status += f"; leaves out {lost:.1f} s {side} it ({why})"
        print(f"  episode {i}: {status}")
    for f in rep.get("plots", []):
        print(f"  plot: {f}")


def _write_starter(report: dict, path: Path) -> None:
    from dreamzero_policy.data.starter import starter_yaml

    path.write_text(starter_yaml(report, path.stem))
    print(f"wrote a starter mapping to {path} (from {report['bag']}); read the notes at its top, then convert with it")


def _inspect(args: argparse.Namespace) -> int:
    from dreamzero_policy.data.inspect import inspect_bag, inspect_dataset
    from dreamzero_policy.data.mapping import load_mapping

    if (args.path / "meta" / "info.json").is_file():
        rep = inspect_dataset(args.path, args.plots)
        if args.json:
            print(json.dumps(rep, indent=2, default=str))
        else:
            print(
                f"dataset {rep['dataset']}: {len(rep['episodes'])} episodes, "
                f"{rep['total_frames']} frames at {rep['fps']} fps"
            )
            for e in rep["episodes"]:
                print(
                    f"  episode {e['episode_index']}: {e['length']} frames"
                    f"{' (video only)' if e['video_only'] else ''} {e['tasks']}"
                )
            for s in rep["skipped_episodes"]:
                print(f"  skipped: {s['bag']}: {s['reason']}")
        return 0
    mapping = load_mapping(resolve_mapping(args.mapping)) if args.mapping else None
    if args.starter_mapping is not None and args.starter_mapping.exists():
        raise MappingError(f"{args.starter_mapping} exists; give a new file for the starter mapping")
    if _is_bag(args.path):
        rep = inspect_bag(args.path, mapping, args.plots)
        print(json.dumps(rep, indent=2, default=str)) if args.json else _print_bag_report(rep)
        if args.starter_mapping is not None:
            _write_starter(rep, args.starter_mapping)
        return 0
    # A folder of recordings: every bag, and a bag that cannot be read is reported, not the end of the run.
    reports = []
    for bag in find_bags([str(args.path)]):
        try:
            reports.append(inspect_bag(bag, mapping, args.plots))
        except DatasetError as exc:
            reports.append({"bag": str(bag), "error": str(exc)})
    if args.json:
        print(json.dumps({"bags": reports}, indent=2, default=str))
    else:
        for rep in reports:
            if "error" in rep:
                print(f"bag {rep['bag']}: FAILED: {rep['error']}")
            else:
                _print_bag_report(rep)
    readable = [rep for rep in reports if "error" not in rep]
    if args.starter_mapping is not None and readable:
        _write_starter(readable[0], args.starter_mapping)
    failed = sum("error" in rep for rep in reports)
    if failed:
        print(f"dreamzero data: {failed} of {len(reports)} bags could not be read", file=sys.stderr)
    return 1 if failed else 0


def _convert(args: argparse.Namespace) -> int:
    from dreamzero_policy.data.allocators import use_lean_allocators

    use_lean_allocators()  # before pyarrow is imported: peak memory stays flat over long bags
    from dreamzero_policy.data.convert import ConvertOptions, convert
    from dreamzero_policy.data.mapping import load_mapping

    mapping = load_mapping(resolve_mapping(args.mapping))
    if args.fps is not None or args.tolerance is not None:
        mapping = dataclasses.replace(
            mapping,
            fps=args.fps or mapping.fps,
            align_tolerance_s=args.tolerance if args.tolerance is not None else mapping.align_tolerance_s,
        )
    bags = find_bags(args.bags)
    opts = ConvertOptions(
        overwrite=args.overwrite,
        skip_bad_episodes=args.skip_bad_episodes,
        instruction=args.instruction,
        progress=not args.no_progress,
        msg_dirs=args.msg_dir,
        single_pass=not args.two_pass,
        jobs=args.jobs,
    )
    result = convert(bags, mapping, args.output, opts)
    print(f"wrote {result.episodes} episodes, {result.frames} frames from {len(bags)} bag(s) to {result.root}")
    # Episodes per video-only reason: a mistyped action topic must not pass unnoticed.
    episodes = result.report["episodes"]
    video_only = Counter(str(e.get("video_only_reason", "no actions")) for e in episodes if e.get("video_only"))
    for reason, count in video_only.items():
        print(
            f"WARNING: {count} of {result.episodes} episodes are video-only (no actions: they train the video loss "
            f"only): {reason}",
            file=sys.stderr,
        )
    for e in result.report["episodes"]:  # a camera that started late or died early cut the other streams
        for side, lost, why in _lost_data(e):
            print(
                f"WARNING: episode {e['episode_index']} ({e['source_bag']}) leaves out {lost:.1f} s of recorded "
                f"data {side} it: {why} (conversion_report.json: lost_{side}_s)",
                file=sys.stderr,
            )
    for s in result.skipped:
        print(f"SKIPPED episode of {s['bag']} [{s['start_ns']}, {s['end_ns']}): {s['reason']}", file=sys.stderr)
    if result.skipped:
        print(f"PARTIAL: {len(result.skipped)} episode(s) skipped (see meta/conversion_report.json)", file=sys.stderr)
    return result.exit_code


def run(args: argparse.Namespace) -> int:
    command = getattr(args, "data_command", None)
    if command not in ("convert", "inspect"):
        print("dreamzero data: choose a command: convert or inspect (see --help)", file=sys.stderr)
        return 2
    try:
        return _convert(args) if command == "convert" else _inspect(args)
    except MappingError as exc:
        print(f"dreamzero data: mapping error: {exc}", file=sys.stderr)
        return 2
    except (DatasetError, OSError) as exc:  # OSError: the output cannot be written (full disk, not a directory)
        print(
            f"dreamzero data: FAILED{', nothing written' if command == 'convert' else ''}: {exc}",
            file=sys.stderr,
        )
        return 1
