"""Offscreen rendering of the three cameras (EGL or OSMesa) and the GL backend selection."""

from __future__ import annotations

import numpy as np
import pytest
from dreamzero_sim.errors import RenderingUnavailableError
from dreamzero_sim.gl_backend import GLBackend, select_gl_backend
from dreamzero_sim.sim_core import CAMERA_NAMES, CameraRenderer, SimRobot
from dreamzero_sim.trajectory_follower import TrajectoryPoint


@pytest.fixture(scope="module")
def sim_and_renderer():
    sim = SimRobot()
    renderer = CameraRenderer(sim.model, 64, 48)
    yield sim, renderer
    renderer.close()


def test_three_cameras_render_non_trivial_images_of_the_configured_size(sim_and_renderer):
    sim, renderer = sim_and_renderer
    images = renderer.render(sim.snapshot())
    assert set(images) == set(CAMERA_NAMES)
    for name, img in images.items():
        assert img.shape == (48, 64, 3) and img.dtype == np.uint8, name
        assert img.std() > 10.0, f"{name} looks blank"
        assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20, f"{name} has too few colours"
    assert not np.array_equal(images["exterior_1"], images["exterior_2"])


def test_images_follow_the_arm(sim_and_renderer):
    sim, renderer = sim_and_renderer
    before = renderer.render(sim.snapshot())
    home = sim.home_positions[:7]
    sim.submit_trajectory([f"panda_joint{i}" for i in range(1, 8)], [TrajectoryPoint(0.3, home + 0.6)])
    sim.step(250)
    after = renderer.render(sim.snapshot())
    for cam in CAMERA_NAMES:
        assert np.abs(after[cam].astype(int) - before[cam].astype(int)).mean() > 1.0, cam


def test_intrinsics_follow_the_field_of_view(sim_and_renderer):
    _, renderer = sim_and_renderer
    intr = renderer.intrinsics("exterior_1")
    assert (intr.width, intr.height) == (64, 48)
    # fovy 70 deg: fy = (h / 2) / tan(35 deg)
    assert intr.fy == pytest.approx(24.0 / np.tan(np.deg2rad(35.0)))
    assert intr.cx == pytest.approx(31.5)


def test_unknown_camera_and_bad_size_are_clear_errors(sim_and_renderer):
    sim, _ = sim_and_renderer
    with pytest.raises(ValueError, match="camera named 'top'"):
        CameraRenderer(sim.model, 32, 32, cameras=["top"])
    with pytest.raises(ValueError, match="positive"):
        CameraRenderer(sim.model, 0, 32)


def test_explicit_mujoco_gl_is_respected():
    env = {"MUJOCO_GL": "OSMesa"}
    assert select_gl_backend(env).name == "osmesa"
    assert env == {"MUJOCO_GL": "OSMesa"}


def test_no_backend_gives_an_actionable_error():
    with pytest.raises(RenderingUnavailableError, match="libosmesa6"):
        GLBackend(None, "no backend works (egl: boom; osmesa: boom)").require()
