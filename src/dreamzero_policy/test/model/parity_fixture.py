"""Locate and load the official-implementation parity fixture (`shared/reference/parity/`).

Not a test module: test files import it (``from parity_fixture import PARITY_DIR, load_case``) after putting
this folder on ``sys.path`` (pytest runs with ``--import-mode=importlib``, which does not do that).

Resolution order: ``$DREAMZERO_PARITY_DIR``; the vendored copy ``<repo>/test/fixtures/reference/parity``;
``<repo>/shared/reference/parity``; ``<repo>/../shared/reference/parity``.
A missing fixture raises ``FileNotFoundError`` so the tests fail loudly instead of skipping.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

_REPO = Path(__file__).resolve().parents[4]
_CANDIDATES = (
    _REPO / "test" / "fixtures" / "reference" / "parity",
    _REPO / "shared" / "reference" / "parity",
    _REPO.parent / "shared" / "reference" / "parity",
)


def _resolve() -> Path:
    override = os.environ.get("DREAMZERO_PARITY_DIR")
    if override:
        return Path(override).expanduser().resolve()
    for candidate in _CANDIDATES:
        if candidate.is_dir():
            return candidate
    return _CANDIDATES[-1]


PARITY_DIR: Path = _resolve()


def _require(path: Path) -> Path:
    if not path.is_file():
        tried = ", ".join(str(c) for c in _CANDIDATES)
        raise FileNotFoundError(
            f"parity fixture file {path} not found. Set DREAMZERO_PARITY_DIR to the folder holding the "
            f"DreamZero parity fixture (searched: $DREAMZERO_PARITY_DIR, {tried})."
        )
    return path


def load_case(name: str) -> dict[str, torch.Tensor]:
    """All tensors of ``<name>.safetensors`` (e.g. ``"schedules"``, ``"kv_inference"``), keyed as stored."""
    return load_file(str(_require(PARITY_DIR / f"{name}.safetensors")))


def load_json(name: str) -> dict[str, Any]:
    """``config.json`` or ``index.json`` of the fixture, parsed (pass ``"config"`` or ``"index"``)."""
    with _require(PARITY_DIR / f"{name}.json").open(encoding="utf-8") as fh:
        return json.load(fh)
