"""Node parameters: declared with descriptors, validated with reasons, loaded from the YAML file."""

from __future__ import annotations

from pathlib import Path

import pytest
from dreamzero_policy.nodes.params import (
    NodeParams,
    ParameterError,
    check_update,
    from_values,
    param_fields,
)
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

REPO = Path(__file__).resolve().parents[4]


def test_node_params_defaults_valid_and_documented():
    p = NodeParams()
    assert p.backend == "inprocess" and p.embodiment == "droid_sim"
    names = [info.ros_name for _, info, _ in param_fields()]
    assert len(names) == len(set(names))
    for name in (
        "backend",
        "checkpoint",
        "embodiment",
        "websocket.host",
        "websocket.port",
        "websocket.timeout_s",
        "replay.bag_path",
        "query_period_s",
        "sync.max_age_s",
        "sync.max_skew_s",
        "publish_joint_trajectory",
        "predicted_video.enabled",
        "predicted_video.max_rate_hz",
        "instruction",
        "device",
        "seed",
        "autostart",
    ):
        assert name in names
    assert all(info.description for _, info, _ in param_fields())


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"backend": "tensorrt"}, "backend: must be one of"),
        ({"websocket.port": 70000}, "websocket.port: must be a TCP port"),
        ({"sync.max_age_s": -1.0}, "sync.max_age_s: must be a positive"),
        ({"sync.max_skew_s": float("nan")}, "sync.max_skew_s"),
        ({"query_period_s": 5.0}, "query_period_s: must be in"),
        ({"device": "gpu0"}, "device: must be"),
        ({"backend": "replay"}, "replay.bag_path: must be set"),
        ({"seed": "seven"}, "seed: expected int, got str"),
        ({"warmup": 1}, "warmup: expected bool"),
        ({"checkpoint": "  "}, "checkpoint: must not be empty"),
        ({"joint_state_topic": "joint states"}, "joint_state_topic: is not a valid topic name"),
    ],
)
def test_node_params_rejected_with_reason(values, reason):
    with pytest.raises(ParameterError, match=None) as err:
        from_values(values)
    assert reason in str(err.value)


def test_node_params_int_accepted_for_float():
    assert from_values({"sync.max_age_s": 1}).max_age_s == 1.0


def test_node_params_update_rules():
    p = NodeParams()
    assert check_update(p, {"sync.max_age_s": 0.4}).max_age_s == 0.4
    with pytest.raises(ParameterError, match="read-only"):
        check_update(p, {"backend": "websocket"})
    with pytest.raises(ParameterError, match="must be a positive"):
        check_update(p, {"sync.max_skew_s": 0.0})
    assert check_update(p, {"use_sim_time": True}) == p  # not ours: left to rclpy


def test_node_params_live_set_validated(ros, make_policy, scripted_backend):
    node = make_policy(test_backend=scripted_backend())
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    res = node.set_parameters([Parameter("sync.max_age_s", value=-2.0)])[0]
    assert not res.successful and "sync.max_age_s" in res.reason
    res = node.set_parameters([Parameter("backend", value="websocket")])[0]
    assert not res.successful
    res = node.set_parameters([Parameter("sync.max_age_s", value=0.35)])[0]
    assert res.successful
    assert node.params.max_age_s == 0.35
    assert node.runtime.buffers.limits.max_age_s == 0.35  # applied to the running buffers
    res = node.set_parameters([Parameter("predicted_video.enabled", value=True)])[0]
    assert res.successful and node.runtime.return_video
    # Descriptors carry the documentation and the read-only flag.
    desc = node.describe_parameter("backend")
    assert desc.read_only and "inprocess" in desc.description
    assert not node.describe_parameter("sync.max_age_s").read_only


def test_node_params_bad_yaml_value_fails_configure_not_constructor(ros, collector, make_policy):
    node = make_policy(**{"websocket.port": "eighty"})  # wrong type from a parameter file
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    ros.wait_for(
        lambda: any("websocket.port: expected int" in s.message for s in collector.status),
        timeout=5,
        what="the reason on /dreamzero/status",
    )


def test_node_params_yaml_file_loads(ros):
    from dreamzero_policy.nodes.params import read_all
    from dreamzero_policy.nodes.policy_node import PolicyNode

    yaml_path = REPO / "config" / "nodes" / "policy_node.yaml"
    node = ros.add(PolicyNode(context=ros.context, cli_args=["--ros-args", "--params-file", str(yaml_path)]))
    p = read_all(node)
    assert (p.backend, p.checkpoint, p.embodiment) == ("inprocess", "small", "droid_sim")
    assert p.max_age_s == 0.2 and p.websocket_port == 8000 and p.autostart is False
