"""The simulated training experiment: the closed-loop harness on its own, and the whole pipeline in smoke mode
(expert demos -> rosbags -> dataset -> tiny model trained twice -> closed-loop evaluation -> reports)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from dreamzero_policy.runtime.io_spec import NormStats, parse_io_spec
from dreamzero_policy.training.sim_experiment import SMOKE, ExperimentConfig, run_experiment, spec_data
from dreamzero_policy.training.sim_rollout import ExpertPolicy, RandomPolicy, run_episode
from dreamzero_policy.training.sim_tasks import TASKS, apply_placement, object_position, sample_placement
from dreamzero_sim.sim_core import CAMERA_NAMES, CameraRenderer, SimRobot


@pytest.fixture(scope="module")
def sim_and_renderer():
    sim = SimRobot()
    renderer = CameraRenderer(sim.model, 64, 32, CAMERA_NAMES)
    yield sim, renderer
    renderer.close()


def _spec_with_stats():
    data = spec_data(24, 15.0)
    spec = parse_io_spec({**data, "normalization": {}})
    return dataclasses.replace(
        spec,
        state_stats=NormStats(np.full(8, -1.0), np.ones(8)),
        action_stats=NormStats(np.full(8, -0.5), np.full(8, 0.5)),
    )


def test_placements_are_seeded_separated_and_applied(sim_and_renderer) -> None:
    sim, _ = sim_and_renderer
    task = TASKS[2]
    a = sample_placement(task, np.random.default_rng(3))
    b = sample_placement(task, np.random.default_rng(3))
    c = sample_placement(task, np.random.default_rng(4))
    assert a == b and a != c
    x0, x1, y0, y1 = task.region
    tx, ty = a.xy[task.target]
    assert x0 <= tx <= x1 and y0 <= ty <= y1
    pts = np.array(list(a.xy.values()))
    dists = np.linalg.norm(pts[:, None] - pts[None], axis=-1)[np.triu_indices(len(pts), 1)]
    assert dists.min() >= 0.13
    apply_placement(sim, a)
    np.testing.assert_allclose(object_position(sim, task.target)[:2], a.xy[task.target], atol=1e-9)


def test_expert_succeeds_through_the_harness_and_random_is_judged(sim_and_renderer) -> None:
    sim, renderer = sim_and_renderer
    rng = np.random.default_rng(123)
    expert, rand = ExpertPolicy(24, 15.0), RandomPolicy(_spec_with_stats(), seed=0)
    ok, random_ok = [], []
    for task in TASKS:
        for _ in range(2):
            p = sample_placement(task, rng)
            res = run_episode(sim, renderer, task, p, expert, 15.0, 24)
            assert res.error is None and res.calls >= 3 and res.ticks == round(task.duration_s * 15)
            ok.append(res.success)
            r = run_episode(sim, renderer, task, p, rand, 15.0, 24)
            random_ok.append(r.success)
            assert r.metrics["min_tcp_distance_m"] > 0
    assert np.mean(ok) >= 5 / 6, ok  # the success checks can pass through this executor
    assert np.mean(random_ok) <= 0.5, random_ok


def test_bad_chunk_holds_the_arm_and_fails(sim_and_renderer) -> None:
    sim, renderer = sim_and_renderer

    class NaNPolicy:
        name = "nan"

        def reset(self, task, placement, sim) -> None:
            pass

        def act(self, obs):
            return np.full((24, 8), np.nan)

    task = TASKS[0]
    res = run_episode(sim, renderer, task, sample_placement(task, np.random.default_rng(0)), NaNPolicy(), 15.0, 24)
    assert not res.success and "non-finite" in (res.error or "")
    np.testing.assert_allclose(sim.joint_state().position[:7], sim.home_positions[:7], atol=2e-3)


@pytest.mark.timeout(300)
def test_smoke_experiment_end_to_end(tmp_path: Path) -> None:
    cfg = ExperimentConfig(**SMOKE)
    results = run_experiment(cfg, tmp_path, "smoke-test")
    for name in ("results.json", "results.md", "loss_curves.png"):
        assert (tmp_path / name).is_file() and (tmp_path / name).stat().st_size > 0
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["config"]["preset"] == "tiny"
    n_tasks = len(cfg.tasks)
    assert results["dataset"]["episodes"] == n_tasks and len(list((tmp_path / "bags").iterdir())) == n_tasks
    for tr in on_disk["training"].values():
        assert tr["steps"] == SMOKE["train_steps"]
        assert (Path(tr["checkpoint"]) / "embodiment.yaml").is_file()
    pols = on_disk["evaluation"]["policies"]
    assert set(pols) == {"scripted expert", "random", "action-only (trained)", "full (trained)"}
    for pol in pols.values():
        episodes = pol["episodes_detail"]
        assert len(episodes) == n_tasks * cfg.eval_episodes_per_task
        assert 0.0 <= pol["rate"] <= 1.0
        assert pol["rate"] == pytest.approx(np.mean([e["success"] for e in episodes]))
        assert all(e["ticks"] > 0 and e["calls"] >= 1 for e in episodes)
    assert pols["scripted expert"]["rate"] >= 0.5
    for name in ("action-only (trained)", "full (trained)"):
        assert pols[name]["model_seconds"] > 0  # the checkpoints really ran
    md = (tmp_path / "results.md").read_text()
    assert "| scripted expert |" in md and "smoke-test" in md
