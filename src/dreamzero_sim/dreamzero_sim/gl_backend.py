"""Choose MuJoCo's offscreen OpenGL backend before ``mujoco`` is imported.

MuJoCo binds its GL backend (``MUJOCO_GL``) and PyOpenGL binds its platform
(``PYOPENGL_PLATFORM``) once, at import, so a failed EGL context cannot be retried with OSMesa in
the same process. We therefore probe each backend in a short child process (about 0.3 s) and
export the first that works: EGL (Mesa llvmpipe on CPU machines) and then OSMesa. A user's
explicit ``MUJOCO_GL`` is always respected. Only the standard library is used here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass

_CANDIDATES = ("egl", "osmesa")
# Creating and freeing a tiny context is the cheapest check that the backend really works.
_PROBE = "from mujoco.{backend} import GLContext\nc = GLContext(16, 16)\nc.make_current()\nc.free()\n"
_INSTALL_HINT = (
    "Install Mesa's EGL (apt-get install libegl1 libgl1-mesa-dri) or OSMesa (apt-get install libosmesa6), "
    "or set MUJOCO_GL (and PYOPENGL_PLATFORM) to a backend that works on this machine."
)


@dataclass(frozen=True)
class GLBackend:
    """The outcome of backend selection: ``name`` is None when no backend works."""

    name: str | None
    detail: str

    def require(self) -> str:
        """The backend name, or raise :class:`RenderingUnavailableError` explaining why there is none."""
        if self.name is None:
            from dreamzero_sim.errors import RenderingUnavailableError

            raise RenderingUnavailableError(f"offscreen rendering is unavailable: {self.detail}. {_INSTALL_HINT}")
        return self.name


def _probe(backend: str, timeout_s: float) -> str | None:
    """None if ``backend`` can create a context in a child process, else the failure text."""
    env = dict(os.environ, MUJOCO_GL=backend, PYOPENGL_PLATFORM=backend)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE.format(backend=backend)],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{type(exc).__name__}: {exc}"
    if proc.returncode == 0:
        return None
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit code {proc.returncode}"


def select_gl_backend(environ: MutableMapping[str, str] | None = None, timeout_s: float = 30.0) -> GLBackend:
    """Pick and export an offscreen backend; call before the first ``import mujoco``.

    Returns the user's ``MUJOCO_GL`` when set; otherwise probes EGL then OSMesa and exports the
    first that works. If ``mujoco`` is already imported without ``MUJOCO_GL``, nothing can be
    changed any more and the result says so.
    """
    env = os.environ if environ is None else environ
    chosen = env.get("MUJOCO_GL", "").strip().lower()
    if chosen:
        return GLBackend(chosen, f"MUJOCO_GL={chosen} set by the user")
    if "mujoco" in sys.modules:
        return GLBackend(
            None,
            "mujoco was imported before MUJOCO_GL was chosen (import dreamzero_sim.sim_core first, or set MUJOCO_GL)",
        )
    failures = []
    for backend in _CANDIDATES:
        error = _probe(backend, timeout_s)
        if error is None:
            env["MUJOCO_GL"] = backend
            env["PYOPENGL_PLATFORM"] = backend
            return GLBackend(backend, f"probed: {backend} works")
        failures.append(f"{backend}: {error}")
    return GLBackend(None, "no backend works (" + "; ".join(failures) + ")")
