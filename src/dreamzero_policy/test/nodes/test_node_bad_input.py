"""The bad-input matrix: the node holds (no chunks), says why on /dreamzero/status and /diagnostics,
keeps running and recovers by itself once the input is good again."""

from __future__ import annotations

import time

import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from dreamzero_policy.nodes import qos
from rclpy.lifecycle import TransitionCallbackReturn
from std_msgs.msg import String

from dreamzero_msgs.msg import PolicyStatus

WAITING = PolicyStatus.WAITING_FOR_INPUT


def _break_encoding(peer, node):
    peer.encoding["wrist"] = "weird16"


def _fix_encoding(peer, node):
    peer.encoding.clear()


def _truncate(peer, node):
    peer.truncate.add("exterior_1")


def _untruncate(peer, node):
    peer.truncate.clear()


def _nan(peer, node):
    peer.joint_value = None


def _finite(peer, node):
    peer.joint_value = 0.1


def _drop_joint(peer, node):
    peer.joint_names = [n for n in peer.joint_names if n != "panda_joint3"]


def _restore_joints(peer, node):
    peer.joint_names = [*(f"panda_joint{i}" for i in range(1, 8)), "gripper"]


def _silence(peer, node):
    peer.silent.add("exterior_2")


def _unsilence(peer, node):
    peer.silent.clear()


def _back_in_time(peer, node):
    peer.stamp_offset_ns = -2_000_000_000  # sim reset / bag loop: stamps jump 2 s back


def _time_ok(peer, node):
    peer.stamp_offset_ns = 0


CASES = {
    # case: (break, repair, expected substring of the status message, node params)
    "unknown_encoding": (_break_encoding, _fix_encoding, "unsupported image encoding 'weird16'", {}),
    "wrong_size": (_truncate, _untruncate, "image data has", {}),
    "nan_joint_state": (_nan, _finite, "non-finite values for ['panda_joint3']", {}),
    "missing_joint": (_drop_joint, _restore_joints, "missing joints ['panda_joint3']", {}),
    "silent_camera": (_silence, _unsilence, "exterior_2", {}),
    "time_backwards": (_back_in_time, _time_ok, "time went backwards", {}),
}


def _problem_reported(collector, text: str, state: int = WAITING) -> bool:
    return any(s.state == state and text in s.message for s in list(collector.status))


def _diag_reported(collector, text: str, level: bytes) -> bool:
    return any(
        d.status and d.status[0].level == level and text in d.status[0].message for d in list(collector.diagnostics)
    )


def _hold_then_recover(ros, collector, node, peer, brk, fix, text, *, state=WAITING, level=DiagnosticStatus.WARN):
    ros.wait_for(lambda: len(collector.chunks) >= 1, timeout=15, what="a first chunk")
    brk(peer, node)
    ros.wait_for(lambda: _problem_reported(collector, text, state), timeout=10, what=f"status saying {text!r}")
    ros.wait_for(lambda: _diag_reported(collector, text, level), timeout=5, what="diagnostics saying why")
    held = len(collector.chunks)
    time.sleep(0.6)
    assert len(collector.chunks) == held, "chunks were published from bad input"
    assert node.runtime is not None and node.is_active  # still alive and active
    fix(peer, node)
    ros.wait_for(lambda: len(collector.chunks) > held, timeout=15, what="chunks after recovery")
    return held


@pytest.mark.parametrize("case", sorted(CASES))
def test_node_bad_input_holds_reports_and_recovers(case, ros, sensors, collector, make_policy, scripted_backend):
    brk, fix, text, params = CASES[case]
    backend = scripted_backend(delay_s=0.02)
    node = make_policy(test_backend=backend, instruction="wipe the table", **params)
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    peer = sensors()
    held = _hold_then_recover(ros, collector, node, peer, brk, fix, text)
    rep = node.report()
    if case in ("unknown_encoding", "wrong_size", "nan_joint_state", "missing_joint"):
        assert rep.rejected_inputs > 0
    else:
        assert rep.stale_inputs > 0
    if case == "time_backwards":
        # A time jump starts a new session: chunk ids start again at 0.
        before = {c.session_id for c in collector.chunks[:held]}
        after = [c for c in collector.chunks[held:] if c.session_id not in before]
        assert after and after[0].chunk_id == 0


def test_node_extra_joints_rejected_when_asked(ros, sensors, collector, make_policy, scripted_backend):
    # The peer always sends "some_other_joint"; by default that is fine (covered by every other test).
    node = make_policy(
        test_backend=scripted_backend(delay_s=0.02), instruction="wipe the table", reject_extra_joints=True
    )
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    peer = sensors()
    ros.wait_for(
        lambda: _problem_reported(collector, "unexpected joints ['some_other_joint']"),
        timeout=10,
        what="extra joints rejected",
    )
    time.sleep(0.5)
    assert collector.chunks == []
    _restore_joints(peer, node)
    ros.wait_for(lambda: len(collector.chunks) >= 1, timeout=15, what="chunks without the extra joint")


def test_node_empty_instruction_holds_and_recovers(ros, sensors, collector, make_policy, scripted_backend):
    node = make_policy(test_backend=scripted_backend(delay_s=0.02))  # no instruction at start
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    sensors()
    ros.wait_for(lambda: _problem_reported(collector, "no instruction"), timeout=10, what="'no instruction'")
    time.sleep(0.5)
    assert collector.chunks == []
    pub = ros.node("test_operator").create_publisher(String, "/dreamzero_policy/instruction", qos.instruction_qos)
    pub.publish(String(data="open the drawer"))
    ros.wait_for(lambda: len(collector.chunks) >= 2, timeout=15, what="chunks after an instruction")
    collector.status.clear()
    pub.publish(String(data="   "))
    ros.wait_for(lambda: _problem_reported(collector, "no instruction"), timeout=10, what="hold after empty")
    ros.wait_for(lambda: node.report().rejected_inputs >= 1, timeout=5, what="empty instruction counted")
    held = len(collector.chunks)
    time.sleep(0.5)
    assert len(collector.chunks) == held
    pub.publish(String(data="open the drawer"))
    ros.wait_for(lambda: len(collector.chunks) > held, timeout=15, what="chunks after a new instruction")
    # The same text after a clear starts a fresh session.
    assert collector.chunks[-1].session_id != collector.chunks[held - 1].session_id


@pytest.mark.parametrize("mode", ["error", "timeout"])
def test_node_backend_failure_is_reported_not_fatal(mode, ros, sensors, collector, make_policy, scripted_backend):
    backend = scripted_backend(delay_s=0.02)
    node = make_policy(test_backend=backend, instruction="fold the towel", inference_timeout_s=0.3)
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    peer = sensors()

    def brk(p, n):
        if mode == "error":
            backend.fail = True
        else:
            backend.delay_s = 0.6

    def fix(p, n):
        backend.fail, backend.delay_s = False, 0.02

    text = "test backend failure" if mode == "error" else "exceeded"
    held = _hold_then_recover(
        ros, collector, node, peer, brk, fix, text, state=PolicyStatus.BACKEND_ERROR, level=DiagnosticStatus.ERROR
    )
    # After a failure the model context is unknown: the next chunks belong to a new session.
    assert collector.chunks[-1].session_id != collector.chunks[held - 1].session_id
    assert node.report().backend_errors >= 1
