"""The policy node publishes correct chunks from live synthetic sensors (replay backend, real rclpy)."""

from __future__ import annotations

import itertools

from dreamzero_policy.nodes.converters import duration_to_s, ns_from_time
from rclpy.lifecycle import TransitionCallbackReturn

DROID_NAMES = [*(f"panda_joint{i}" for i in range(1, 8)), "gripper"]


def _activate(node) -> None:
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS


def test_node_chunks_stamped_named_and_counted(ros, sensors, collector, make_policy, replay_bag):
    node = make_policy(
        backend="replay",
        replay__bag_path=str(replay_bag),
        replay__loop=True,
        instruction="pick up the cube",
        publish_joint_trajectory=True,
    )
    _activate(node)
    peer = sensors()
    ros.wait_for(lambda: len(collector.chunks) >= 4, timeout=15, what="4 chunks")

    chunks = list(collector.chunks)
    published = set(peer.published)
    for c in chunks:
        # Stamp = observation time = the stamp of a message the peer really published.
        assert ns_from_time(c.header.stamp) in published
        assert list(c.names) == DROID_NAMES
        assert c.horizon == 24 and len(c.data) == 24 * 8
        assert c.execute_horizon == 8
        assert abs(duration_to_s(c.step_duration) - 1 / 15) < 1e-6
        assert c.embodiment == "droid_franka_sim"
        assert c.action_space == 0
        assert ns_from_time(c.inference_started) >= ns_from_time(c.header.stamp)
    sessions = {c.session_id for c in chunks}
    assert len(sessions) == 1
    assert [c.chunk_id for c in chunks] == list(range(len(chunks)))
    # Provenance records name the same observation time and the inputs used.
    ros.wait_for(lambda: len(collector.observations) >= len(chunks), timeout=5, what="observation stamps")
    by_id = {o.chunk_id: o for o in collector.observations}
    for c in chunks:
        o = by_id[c.chunk_id]
        assert o.header.stamp == c.header.stamp and o.session_id == c.session_id
        assert set(o.topics) == {
            "/sim/exterior_1/image_raw",
            "/sim/exterior_2/image_raw",
            "/sim/wrist/image_raw",
            "/joint_states",
        }
        assert all(a >= 0 for a in o.age_s)
    # JointTrajectory: the arm joints only (gripper column is not a joint position), timed per step.
    ros.wait_for(lambda: len(collector.trajectories) >= 1, timeout=5, what="a joint trajectory")
    traj = collector.trajectories[0]
    assert list(traj.joint_names) == DROID_NAMES[:7]
    assert len(traj.points) == 24
    assert abs(duration_to_s(traj.points[0].time_from_start) - 1 / 15) < 1e-6
    assert abs(duration_to_s(traj.points[-1].time_from_start) - 24 / 15) < 1e-6
    first = chunks[[c.header.stamp for c in chunks].index(traj.header.stamp)]
    assert list(traj.points[0].positions) == list(first.data[:7])
    # Status says RUNNING with the counters.
    ros.wait_for(
        lambda: collector.any_status(lambda s: s.state == 4 and s.chunks_published >= 4),
        timeout=5,
        what="RUNNING status",
    )
    s = [s for s in collector.status if s.state == 4][-1]
    assert s.backend == "replay" and s.model_id.startswith("replay:")
    assert s.session_id in sessions


def test_node_reset_service_starts_new_session(ros, sensors, collector, make_policy, replay_bag):
    from std_srvs.srv import Trigger

    node = make_policy(
        backend="replay", replay__bag_path=str(replay_bag), replay__loop=True, instruction="stack the blocks"
    )
    _activate(node)
    sensors()
    ros.wait_for(lambda: len(collector.chunks) >= 2, timeout=15, what="first chunks")
    old = collector.chunks[0].session_id

    client = ros.node("test_reset_client").create_client(Trigger, "/dreamzero_policy/reset")
    assert client.wait_for_service(timeout_sec=5)
    resp = client.call(Trigger.Request(), timeout_sec=5)
    assert resp is not None and resp.success, resp
    ros.wait_for(
        lambda: any(c.session_id != old for c in collector.chunks), timeout=15, what="a chunk of the new session"
    )
    new = [c for c in collector.chunks if c.session_id != old]
    assert new[0].chunk_id == 0
    assert [c.chunk_id for c in new] == list(range(len(new)))
    assert new[0].session_id in resp.message


def test_node_chunks_from_tiny_inprocess_model(ros, sensors, collector, make_policy):
    node = make_policy(backend="inprocess", checkpoint="tiny", instruction="pick up the cube", inference_timeout_s=60.0)
    _activate(node)
    meta = node.runtime.backend.metadata()
    assert meta["backend"] == "inprocess" and meta["model_id"] == "preset:tiny"
    peer = sensors()
    ros.wait_for(lambda: len(collector.chunks) >= 3, timeout=60, what="3 chunks from the tiny model")
    chunks = list(collector.chunks)
    horizon = int(meta["action_horizon"])
    published = set(peer.published)
    for c in chunks:
        assert ns_from_time(c.header.stamp) in published
        assert list(c.names) == DROID_NAMES
        assert c.horizon == horizon and len(c.data) == horizon * 8
        assert all(abs(v) < 1e3 for v in c.data)  # finite, robot units
    assert [c.chunk_id for c in chunks] == list(range(len(chunks)))
    assert len({c.session_id for c in chunks}) == 1
    assert all(ns_from_time(b.header.stamp) > ns_from_time(a.header.stamp) for a, b in itertools.pairwise(chunks))
