"""``dreamzero serve``: a policy behind the openpi/RoboArena websocket protocol.

Each connection gets the handshake config, then ``infer`` / ``reset`` requests (see
``backends/protocol.py``). One lock serialises model calls (one model, one device). A request
without ``session_id`` (stock openpi clients send none) uses a per-connection session, so every
new connection starts a fresh model context. Errors are text frames: a malformed request keeps the
connection open; a model/server failure also closes it with 1011, like the official server. The
traceback goes to the server log, not to the client.

Binds to 127.0.0.1 unless ``--host`` says otherwise: the server executes no code from clients but
offers a GPU to anyone who can reach the port.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np
import websockets.exceptions
import websockets.sync.server

from dreamzero_policy.backends.base import PolicyBackend
from dreamzero_policy.backends.protocol import ERROR_PREFIX, RESET_OK, pack, server_config, unpack
from dreamzero_policy.core.errors import BackendError, DreamZeroError, ObservationError

log = logging.getLogger(__name__)


class PolicyServer:
    """Serve ``backend`` on ``host:port`` (port 0 = ephemeral; read ``.port`` after ``start``)."""

    def __init__(
        self,
        backend: PolicyBackend,
        camera_keys: list[str],
        host: str = "127.0.0.1",
        port: int = 8000,
        response_format: str = "dict",
    ) -> None:
        if response_format not in ("dict", "array"):
            raise ValueError("response_format must be 'dict' or 'array'")
        self.backend = backend
        self.config = server_config(backend.metadata(), camera_keys)
        self.response_format = response_format
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._server = websockets.sync.server.serve(
            self._handle, host, port, compression=None, max_size=None, ping_interval=60, ping_timeout=600
        )
        self.host = host
        self.port = int(self._server.socket.getsockname()[1])
        self._thread: threading.Thread | None = None
        self._open: set[websockets.sync.server.ServerConnection] = set()

    def start(self) -> PolicyServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="dreamzero-serve", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        # shutdown() only closes the listening socket: close live connections too, or their handler
        # threads keep the process alive while a client stays connected.
        for conn in list(self._open):
            conn.close(1001, "server shutting down")
        if self._thread is not None:
            self._thread.join(5.0)

    # ------------------------------------------------------------------ per connection

    def _handle(self, conn: websockets.sync.server.ServerConnection) -> None:
        self._open.add(conn)
        try:
            self._serve_connection(conn)
        finally:
            self._open.discard(conn)

    def _serve_connection(self, conn: websockets.sync.server.ServerConnection) -> None:
        conn_session = f"conn-{next(self._ids)}"
        conn.send(pack(self.config))
        while True:
            try:
                frame = conn.recv()
            except websockets.exceptions.ConnectionClosed:
                return
            try:
                reply = self._answer(frame, conn_session)
            except (ObservationError, BackendError, ValueError) as exc:
                # A bad request: tell the client, keep serving this connection.
                kind = "bad request" if isinstance(exc, (ObservationError, ValueError)) else "backend error"
                log.warning("%s from %s: %s", kind, conn.remote_address, exc)
                if not self._send(conn, f"{ERROR_PREFIX}{kind}: {exc}"):
                    return
                if isinstance(exc, BackendError):
                    conn.close(1011, "backend error")
                    return
                continue
            except Exception as exc:  # report, log the traceback, close like the official server
                log.exception("policy server failure")
                self._send(conn, f"{ERROR_PREFIX}internal error: {type(exc).__name__}: {exc}")
                conn.close(1011, "internal error")
                return
            if not self._send(conn, reply):
                return

    @staticmethod
    def _send(conn: websockets.sync.server.ServerConnection, data: Any) -> bool:
        try:
            conn.send(data)
            return True
        except websockets.exceptions.ConnectionClosed:
            return False

    def _answer(self, frame: Any, conn_session: str) -> bytes | str:
        if isinstance(frame, str):
            raise ObservationError("requests must be binary msgpack frames, got text", "bad_input")
        req = unpack(frame)
        if not isinstance(req, dict):
            raise ObservationError(f"request must be a map, got {type(req).__name__}", "bad_input")
        endpoint = req.pop("endpoint", "infer")
        if endpoint == "reset":
            with self._lock:
                self.backend.reset()
            return RESET_OK
        if endpoint != "infer":
            raise ObservationError(f"unknown endpoint {endpoint!r} (infer | reset)", "bad_input")
        req.setdefault("session_id", conn_session)
        with self._lock:
            result = self.backend.infer(req)
        actions = np.asarray(result["actions"], dtype=np.float32)
        if self.response_format == "array":
            return pack(actions)
        extra = {k: v for k, v in result.items() if k in ("timing", "first_call")}
        return pack({"actions": actions, **extra})


# ---------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", default="droid_sim", help="embodiment I/O spec name or YAML path")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--preset", default=None, help="model preset (e.g. tiny); default when no --checkpoint")
    src.add_argument("--checkpoint", type=Path, default=None, help="model directory (from_pretrained)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: localhost only)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (0 = pick a free one)")
    parser.add_argument("--port-file", type=Path, default=None, help="write the bound port here once listening")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--response-format",
        choices=("dict", "array"),
        default="dict",
        help="dict: {'actions': (H, D)} (openpi); array: bare (H, D) (official DreamZero)",
    )


def run(args: argparse.Namespace) -> int:
    from dreamzero_policy.backends.inprocess import InProcessBackend
    from dreamzero_policy.runtime.io_spec import load_io_spec

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not 0 <= args.port <= 65535:
        print(f"dreamzero serve: --port {args.port} is out of range", flush=True)
        return 2
    try:
        spec = load_io_spec(args.spec)
        if args.checkpoint is not None:
            backend = InProcessBackend.from_pretrained(spec, args.checkpoint, device=args.device)
        else:
            backend = InProcessBackend.from_preset(spec, args.preset or "tiny", seed=args.seed, device=args.device)
        server = PolicyServer(
            backend,
            [c.request_key for c in spec.cameras],
            host=args.host,
            port=args.port,
            response_format=args.response_format,
        )
    except (DreamZeroError, OSError) as exc:
        print(f"dreamzero serve: {exc}", flush=True)
        return 1
    if args.port_file is not None:
        args.port_file.write_text(str(server.port))
    print(f"dreamzero serve: {backend.metadata()['model_id']} on ws://{args.host}:{server.port}", flush=True)
    _stop_on_signals()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        backend.close()
    return 0


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM stop the server cleanly, even when started as a background job (which
    inherits SIGINT as ignored, so Python would never raise KeyboardInterrupt)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _raise_interrupt)
        signal.signal(signal.SIGTERM, _raise_interrupt)
