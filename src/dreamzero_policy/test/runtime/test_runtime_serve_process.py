"""``dreamzero serve`` as a separate process: the real console script from the colcon install
(``make build``), the tiny model, the real ``openpi_client`` as the client. It binds 127.0.0.1 by
default, answers ``infer`` with absolute actions and exits cleanly (rc 0, no traceback) on SIGINT,
also while a client is still connected."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
from dreamzero_policy.runtime.io_spec import load_io_spec
from openpi_client.websocket_client_policy import WebsocketClientPolicy

REPO = Path(__file__).resolve().parents[4]
SETUP = REPO / "install" / "setup.bash"
EXE = REPO / "install" / "dreamzero_policy" / "lib" / "dreamzero_policy" / "dreamzero"
SPEC = load_io_spec("droid_sim")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening_addresses(port: int) -> set[str]:
    """Local addresses of LISTEN sockets on ``port`` from /proc/net/tcp{,6} (hex, as the kernel writes)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            addr, hex_port = fields[1].split(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A = TCP_LISTEN
                found.add(addr)
    return found


def request(session: str) -> dict:
    rng = np.random.default_rng(0)
    h, w = SPEC.request_size
    req = {c.request_key: rng.integers(0, 255, (1, h, w, 3), dtype=np.uint8) for c in SPEC.cameras}
    req.update(
        {
            "observation/joint_position": np.full(7, 0.2, np.float32),
            "observation/gripper_position": np.array([0.0], np.float32),
            "prompt": "pick up the cube",
            "session_id": session,
        }
    )
    return req


def test_serve_process_with_openpi_client_binds_localhost_and_exits_on_sigint() -> None:
    assert EXE.is_file() and SETUP.is_file(), f"{EXE} missing: run 'make build'"
    port = free_port()
    # The console script finds its package through the install's environment, as a user's shell would.
    cmd = [
        "bash",
        "-c",
        f'set +u; source "{SETUP}"; exec "$@"',
        "_",
        str(EXE),
        "serve",
        "--preset",
        "tiny",
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while not any(f":{port}" in ln and "ws://" in ln for ln in list(lines)):
            assert proc.poll() is None, "serve exited early:\n" + "".join(lines)
            assert time.monotonic() < deadline, "serve did not start listening:\n" + "".join(lines)
            time.sleep(0.1)
        assert listening_addresses(port) == {"0100007F"}, "must bind 127.0.0.1 only by default"

        client = WebsocketClientPolicy(host="127.0.0.1", port=port)
        meta = client.get_server_metadata()
        assert meta["backend"] == "inprocess" and meta["model_id"] == "preset:tiny"
        assert meta["action_space"] == "joint_position" and meta["needs_session_id"] is True
        out = client.infer(request("a"))
        actions = out["actions"]
        assert actions.dtype == np.float32 and actions.shape == (int(meta["action_horizon"]), 8)
        assert np.all(np.isfinite(actions)) and out["first_call"] is True
        assert client.infer(request("a"))["first_call"] is False  # same session: the model context goes on
        assert client.infer(request("b"))["first_call"] is True  # new session_id: the model was reset

        proc.send_signal(signal.SIGINT)  # the client is still connected
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        reader.join(timeout=5)
    output = "".join(lines)
    assert rc == 0, f"exit code {rc}\n{output}"
    assert "Traceback" not in output, output
    assert listening_addresses(port) == set()
