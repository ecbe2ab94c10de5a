"""``dreamzero``: the command-line entry point of the workspace.

Each subcommand lives in the module that owns the feature and exposes two functions:
``add_arguments(parser: argparse.ArgumentParser) -> None`` and ``run(args) -> int``.
Modules are imported lazily, so ``dreamzero --help`` stays fast and a missing optional
dependency only affects the subcommand that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "serve": (
        "dreamzero_policy.backends.serve",
        "serve a model over the openpi/DreamZero websocket protocol",
    ),
    "data": (
        "dreamzero_policy.data.cli",
        "rosbags (MCAP/sqlite3) -> DreamZero/LeRobot training datasets: convert, inspect",
    ),
    "train": (
        "dreamzero_policy.training.cli",
        "fine-tune / adapt a model on a converted dataset",
    ),
    "demo": (
        "dreamzero_policy.demo",
        "run the simulated robot + policy + adapter for one episode and write a report",
    ),
}


def _load(module_name: str):
    return importlib.import_module(module_name)


def build_parser(available: dict[str, tuple[str, str]] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dreamzero",
        description="DreamZero ROS 2 stack: serve models, convert bags, train, run the demo.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in (available or SUBCOMMANDS).items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        try:
            module = _load(module_name)
        except ModuleNotFoundError as exc:
            sp.set_defaults(_unavailable=f"'{name}' is unavailable: {exc}")
            continue
        module.add_arguments(sp)
        sp.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    wanted = {k: v for k, v in SUBCOMMANDS.items() if argv and argv[0] == k}
    parser = build_parser(wanted or None)
    args = parser.parse_args(argv)
    if getattr(args, "_unavailable", None):
        print(f"dreamzero: {args._unavailable}", file=sys.stderr)
        return 2
    if not hasattr(args, "_run"):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:  # each command cleans up on the way out (conversion removes its staging tree)
        print(f"dreamzero {argv[0]}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
