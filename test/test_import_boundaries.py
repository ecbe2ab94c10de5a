"""Layering: the ROS-free core never imports rclpy, and the ROS/adapter side never pulls in torch.

Each layer is imported in a fresh interpreter so ``sys.modules`` shows exactly what it drags in.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from importlib import import_module

import pytest

# package prefix -> modules that must not be imported by it
FORBIDDEN = {
    "dreamzero_policy.core": ("rclpy", "torch", "diffusers", "transformers"),
    "dreamzero_policy.model": ("rclpy",),
    "dreamzero_policy.runtime": ("rclpy",),
    "dreamzero_policy.backends": ("rclpy",),
    "dreamzero_policy.data": ("rclpy", "torch"),
    "dreamzero_policy.nodes": ("torch", "diffusers", "transformers"),
    "embodiment_adapters": ("torch", "diffusers", "transformers"),
    "embodiment_adapters.safety": ("rclpy", "torch"),
    "dreamzero_sim": ("torch",),
}
# Modules that exist only to be imported by launch files (need ROS `launch`, absent from PyPI).
LAUNCH_ONLY = {"dreamzero_policy.launch_actions"}


def modules_under(package: str) -> list[str]:
    pkg = import_module(package)
    names = [package]
    for info in pkgutil.walk_packages(pkg.__path__, prefix=package + "."):
        if info.name not in LAUNCH_ONLY and ".test" not in info.name:
            names.append(info.name)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layer_does_not_import_forbidden_modules(package: str) -> None:
    modules = modules_under(package)
    assert len(modules) > 1 or package.endswith("safety"), f"{package} has no modules"
    # one interpreter per layer: import every module of the layer together
    code_modules = ";".join(f"import {m}" for m in modules)
    out = subprocess.run(
        [sys.executable, "-c", f"{code_modules}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, f"importing {package} failed:\n{out.stderr[-3000:]}"
    loaded = {m.split(".")[0] for m in json.loads(out.stdout.strip().splitlines()[-1])}
    bad = sorted(set(FORBIDDEN[package]) & loaded)
    assert not bad, f"{package} imports {bad}"
