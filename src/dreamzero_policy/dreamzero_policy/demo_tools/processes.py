"""Start the bringup's nodes as child processes from their installed executables; stop them cleanly.

The ROS ``launch`` package is not on PyPI, so the demo starts ``<prefix>/lib/<pkg>/<exe>`` with
:meth:`NodeSpec.ros_arguments` itself. Each child gets its own session (so a Ctrl-C in the terminal
reaches only the demo, which then stops the children in order) and, on Linux, a parent-death
signal so no node outlives a killed demo. Output goes to ``<run>/logs/<node>.log``.

Shutdown: SIGINT (rclpy's clean path), then SIGTERM, then SIGKILL, each after a timeout. A child
is *clean* when it exits 0 after SIGINT; anything else is reported with the log's tail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from dreamzero_policy.bringup import NodeSpec


def _die_with_parent_prefix() -> list[str]:
    """``setpriv --pdeathsig TERM`` when available (util-linux): the child gets SIGTERM if the demo dies.

    Done with a wrapper, not ``preexec_fn``, because the demo already runs DDS threads when it forks.
    The signal follows the *thread* that forked, so children must be started from the main thread.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM"] if setpriv else []


def executable_path(spec: NodeSpec, install_dir: Path | None = None) -> Path:
    """``<prefix of spec.package>/lib/<package>/<executable>``; raises FileNotFoundError with a fix."""
    candidates: list[Path] = []
    if install_dir is not None:
        candidates.append(install_dir / spec.package)
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix and Path(prefix).name == spec.package:
            candidates.append(Path(prefix))
    candidates.append(Path(__file__).resolve().parents[4] / "install" / spec.package)  # <repo>/install/<pkg>
    for prefix in candidates:
        exe = prefix / "lib" / spec.package / spec.executable
        if exe.is_file() and os.access(exe, os.X_OK):
            return exe
    looked = ", ".join(str(p / "lib" / spec.package / spec.executable) for p in candidates)
    raise FileNotFoundError(
        f"{spec.package}/{spec.executable} is not installed (looked in {looked}); "
        "run 'make build' (or 'make setup') first"
    )


@dataclass
class Child:
    name: str
    command: list[str]
    log_path: Path
    process: subprocess.Popen[bytes]
    returncode: int | None = None
    stop_signal: str = ""  # the strongest signal it needed: SIGINT / SIGTERM / SIGKILL

    @property
    def clean(self) -> bool:
        return self.returncode == 0 and self.stop_signal in ("", "SIGINT")

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])


class ProcessGroup:
    """The children of one demo run, started in order and stopped in reverse order."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.env = env
        self.children: list[Child] = []

    def start(self, spec: NodeSpec, extra_args: list[str] | None = None, install_dir: Path | None = None) -> Child:
        cmd = [str(executable_path(spec, install_dir)), *spec.ros_arguments(), *(extra_args or [])]
        wrapper = _die_with_parent_prefix()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{spec.name}.log"
        with log_path.open("wb") as log:
            log.write(("$ " + " ".join(cmd) + "\n").encode())
            log.flush()
            proc = subprocess.Popen(
                [*wrapper, *cmd],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        child = Child(spec.name, cmd, log_path, proc)
        self.children.append(child)
        return child

    def dead(self) -> list[Child]:
        """Children that exited on their own (a failure while the demo runs)."""
        out = []
        for c in self.children:
            if c.returncode is None and c.process.poll() is not None:
                c.returncode = c.process.returncode
                c.stop_signal = "exited by itself"
            if c.stop_signal == "exited by itself":
                out.append(c)
        return out

    def stop(self, sigint_timeout: float = 15.0, sigterm_timeout: float = 5.0) -> list[Child]:
        """Stop the children one by one in reverse start order (adapter before policy before sim, so
        the robot is never commanded by a half-stopped graph), escalating SIGINT -> SIGTERM -> SIGKILL."""
        for c in reversed(self.children):
            if c.returncode is not None or c.process.poll() is not None:
                continue
            for sig, timeout in (
                (signal.SIGINT, sigint_timeout),
                (signal.SIGTERM, sigterm_timeout),
                (signal.SIGKILL, 5.0),
            ):
                with contextlib.suppress(ProcessLookupError):
                    c.process.send_signal(sig)
                c.stop_signal = sig.name
                with contextlib.suppress(subprocess.TimeoutExpired):
                    c.process.wait(timeout=timeout)
                    break
        for c in self.children:
            if c.returncode is None:
                c.returncode = c.process.poll()
        return self.children
