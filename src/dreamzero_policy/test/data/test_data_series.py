"""SeriesBuilder's column selection for chunks and trajectories: names in any order, any length."""

from __future__ import annotations

import numpy as np
from dreamzero_policy.data.bagio import make_typestore
from dreamzero_policy.data.mapping import StreamSpec
from dreamzero_policy.data.streams import SeriesBuilder

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
