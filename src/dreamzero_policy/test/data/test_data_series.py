"""Recorded values into series: chunk/trajectory columns in any name order and length; non-finite values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dreamzero_policy.core.errors import DatasetError
from dreamzero_policy.data.bagio import make_typestore
from dreamzero_policy.data.convert import ConvertOptions, convert
from dreamzero_policy.data.mapping import StreamSpec, mapping_from_dict
from dreamzero_policy.data.streams import SeriesBuilder
from dreamzero_policy.data.synth import SynthSpec, write_bag

T = make_typestore().types
NS = 1_000_000_000
STEP_NS = 100_000_000
SPEC = StreamSpec(key="joint_position", topic="/cmd", names=("j1", "j2", "j3"))


def _header(t_ns: int) -> object:
    return T["std_msgs/msg/Header"](
        stamp=T["builtin_interfaces/msg/Time"](sec=t_ns // NS, nanosec=t_ns % NS), frame_id=""
    )


def _duration(ns: int) -> object:
    return T["builtin_interfaces/msg/Duration"](sec=ns // NS, nanosec=ns % NS)


def _chunk(t_ns: int, names: list[str], data: np.ndarray) -> object:
    return T["dreamzero_msgs/msg/ActionChunk"](
        header=_header(t_ns),
        session_id="s",
        chunk_id=t_ns // NS,
        embodiment="test",
        action_space=0,
        step_duration=_duration(STEP_NS),
        horizon=data.shape[0],
        execute_horizon=1,
        names=names,
        data=data.reshape(-1),
        inference_started=_header(t_ns).stamp,
        inference_latency=_duration(0),
    )


def _trajectory(t_ns: int, names: list[str], points: np.ndarray) -> object:
    pts = [
        T["trajectory_msgs/msg/JointTrajectoryPoint"](
            positions=p,
            velocities=np.zeros(0),
            accelerations=np.zeros(0),
            effort=np.zeros(0),
            time_from_start=_duration((k + 1) * STEP_NS),
        )
        for k, p in enumerate(points)
    ]
    return T["trajectory_msgs/msg/JointTrajectory"](header=_header(t_ns), joint_names=names, points=pts)


def _expected(name_orders: list[list[str]], blocks: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(
        [b[:, [names.index(j) for j in SPEC.names]] for names, b in zip(name_orders, blocks, strict=True)]
    )


def test_series_action_chunks_select_named_columns_whatever_the_order_and_horizon() -> None:
    rng = np.random.default_rng(0)
    # Each chunk starts a second after the last, so no step is replaced and every row is kept.
    # The third has the second's shape but another name order: the selection must follow it.
    orders = [["g", "j3", "j1", "j2"], ["g", "j3", "j1", "j2"], ["j1", "j2", "j3", "g"], ["j2", "g", "j1", "j3"]]
    horizons = [4, 6, 6, 3]
    blocks = [rng.normal(size=(h, 4)) for h in horizons]
    b = SeriesBuilder(SPEC, "dreamzero_msgs/msg/ActionChunk", period_ns=STEP_NS)
    for k, (names, block) in enumerate(zip(orders, blocks, strict=True)):
        b.add(_chunk((k + 1) * NS, names, block), (k + 1) * NS)
    series = b.finish()
    np.testing.assert_array_equal(series.values, _expected(orders, blocks))
    times = np.concatenate([(k + 1) * NS + STEP_NS * np.arange(1, h + 1) for k, h in enumerate(horizons)])
    np.testing.assert_array_equal(series.times, times)


def test_series_trajectories_select_named_columns_whatever_the_order_and_length() -> None:
    rng = np.random.default_rng(1)
    orders = [["j3", "j1", "j2"], ["j3", "j1", "j2"], ["j1", "j2", "j3"]]
    blocks = [rng.normal(size=(n, 3)) for n in (3, 5, 5)]
    b = SeriesBuilder(SPEC, "trajectory_msgs/msg/JointTrajectory", period_ns=STEP_NS)
    for k, (names, block) in enumerate(zip(orders, blocks, strict=True)):
        b.add(_trajectory((k + 1) * NS, names, block), (k + 1) * NS)
    np.testing.assert_array_equal(b.finish().values, _expected(orders, blocks))


def test_series_finite_check_agrees_with_numpy_including_overflowing_sums() -> None:
    from dreamzero_policy.data.streams import _all_finite

    rows = [
        [],
        [0.0],
        [1.0, 2.0, 3.0],
        [np.nan],
        [1.0, np.inf],
        [-np.inf, 2.0],
        [np.inf, -np.inf],  # sums to NaN
        [1e308, 1e308],  # finite values whose sum overflows
        [1e308, 1e308, np.nan],
        [-1e308, -1e308, 5.0],
    ]
    for row in rows:
        arr = np.array(row, np.float64)
        assert _all_finite(arr) == bool(np.isfinite(arr).all()), row


def _bag_with_one_bad_state(path: Path, joint: str, value: float) -> int:
    """2 s of JointStates (100 Hz) and a camera; message 50 has ``value`` for ``joint``. Returns its stamp."""
    spec = SynthSpec(gripper_joint="spare", joint_overrides=((50, joint, value),))
    return write_bag(path, spec).stamps["/joint_states"][50]


MAPPING = {
    "name": "nan",
    "fps": 10,
    "align_tolerance_s": 0.1,
    "video": {"cam": {"topic": "/cam/image_raw"}},
    "state": {"joint_position": {"topic": "/joint_states", "names": ["j1", "j2", "j3"]}},
    "action": {"joint_position": {"next_state": "joint_position"}},
    "instruction": {"text": "nan"},
}


@pytest.mark.parametrize("single", [True, False], ids=["single-pass", "two-pass"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_series_a_non_finite_joint_value_fails_by_name_and_writes_nothing(
    tmp_path: Path, single: bool, value: float
) -> None:
    stamp = _bag_with_one_bad_state(tmp_path / "bag", "j2", value)
    with pytest.raises(DatasetError, match=f"/joint_states: non-finite value for 'joint_position' at stamp {stamp} ns"):
        convert(
            [tmp_path / "bag"],
            mapping_from_dict(MAPPING),
            tmp_path / "ds",
            ConvertOptions(progress=False, single_pass=single),
        )
    assert not (tmp_path / "ds").exists()


def test_series_a_non_finite_value_of_an_unmapped_joint_is_not_an_error(tmp_path: Path) -> None:
    _bag_with_one_bad_state(tmp_path / "bag", "spare", np.nan)
    result = convert([tmp_path / "bag"], mapping_from_dict(MAPPING), tmp_path / "ds", ConvertOptions(progress=False))
    assert result.exit_code == 0 and result.frames >= 15
