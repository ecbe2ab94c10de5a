"""Websocket backend: a client of the openpi/RoboArena protocol (official DreamZero server or
``dreamzero serve``), so a robot PC can use a remote (multi-GPU) server.

Unlike the stock openpi client it never waits forever: connecting, the handshake and every reply
have deadlines, and reconnecting is bounded (``max_connect_attempts`` per call, with backoff). A
reply that misses its deadline closes the connection, because a late answer would otherwise be
read as the answer to the next request.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import websockets.exceptions
import websockets.sync.client

from dreamzero_policy.backends.base import check_actions
from dreamzero_policy.backends.protocol import RESET_OK, pack, response_to_result, unpack
from dreamzero_policy.core.errors import BackendConnectionError, BackendError, BackendTimeoutError

log = logging.getLogger(__name__)


class WebsocketBackend:
    """:class:`~dreamzero_policy.backends.base.PolicyBackend` over a websocket connection."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = 8000,
        *,
        action_dim: int | None = None,
        connect_timeout_s: float = 10.0,
        infer_timeout_s: float = 30.0,
        max_connect_attempts: int = 3,
        backoff_s: float = 0.5,
        api_key: str | None = None,
        connect_now: bool = True,
    ) -> None:
        if max_connect_attempts < 1:
            raise ValueError("max_connect_attempts must be >= 1")
        uri = host if host.startswith(("ws://", "wss://")) else f"ws://{host}"
        self.uri = uri + (f":{port}" if port is not None else "")
        self.action_dim = action_dim
        self.connect_timeout_s = connect_timeout_s
        self.infer_timeout_s = infer_timeout_s
        self.max_connect_attempts = max_connect_attempts
        self.backoff_s = backoff_s
        self._headers = {"Authorization": f"Api-Key {api_key}"} if api_key else None
        self._conn: websockets.sync.client.ClientConnection | None = None
        self.server_metadata: dict[str, Any] = {}
        self.reconnects = 0
        if connect_now:
            self._ensure_connected()

    # ------------------------------------------------------------------ connection

    def _connect_once(self) -> None:
        conn = websockets.sync.client.connect(
            self.uri,
            compression=None,
            max_size=None,
            open_timeout=self.connect_timeout_s,
            additional_headers=self._headers,
            # The server may be busy for seconds inside one inference: be patient with pings.
            ping_interval=60,
            ping_timeout=600,
            legacy=True,  # a long-lived connection object, not a context manager
        )
        try:
            hello = conn.recv(timeout=self.connect_timeout_s)
        except Exception:
            conn.close()
            raise
        if isinstance(hello, str):
            conn.close()
            raise BackendError(f"server sent text instead of its config: {hello[:200]}")
        meta = unpack(hello)
        if not isinstance(meta, dict):
            conn.close()
            raise BackendError(f"server config is a {type(meta).__name__}, expected a map")
        self._conn, self.server_metadata = conn, meta

    def _ensure_connected(self) -> websockets.sync.client.ClientConnection:
        if self._conn is not None:
            return self._conn
        last: Exception | None = None
        for attempt in range(self.max_connect_attempts):
            if attempt:
                time.sleep(self.backoff_s * (2 ** (attempt - 1)))
                self.reconnects += 1
            try:
                self._connect_once()
                assert self._conn is not None
                return self._conn
            except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
                last = exc
                log.warning(
                    "connecting to %s failed (attempt %d/%d): %s", self.uri, attempt + 1, self.max_connect_attempts, exc
                )
        raise BackendConnectionError(
            f"cannot reach policy server {self.uri} after {self.max_connect_attempts} attempts: {last}"
        )

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # closing a broken socket may fail in many ways
                self._conn.close()
        self._conn = None

    def _request(self, payload: dict[str, Any]) -> Any:
        conn = self._ensure_connected()
        data = pack(payload)
        try:
            conn.send(data)
        except websockets.exceptions.ConnectionClosed:
            # Closed while idle (server restart): one fresh connection, then send again.
            self._drop()
            conn = self._ensure_connected()
            conn.send(data)
        try:
            reply = conn.recv(timeout=self.infer_timeout_s)
        except TimeoutError as exc:
            self._drop()
            raise BackendTimeoutError(f"no reply from {self.uri} within {self.infer_timeout_s:.1f} s") from exc
        except websockets.exceptions.ConnectionClosed as exc:
            self._drop()
            raise BackendConnectionError(f"server {self.uri} closed the connection: {exc}") from exc
        return reply

    # ------------------------------------------------------------------ PolicyBackend

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        reply = self._request({**obs, "endpoint": "infer"})
        if isinstance(reply, str):
            # The official server closes after an error frame (ours may not): start clean next call.
            self._drop()
            raise BackendError(f"policy server error: {reply[:2000]}")
        result = response_to_result(unpack(reply))
        result["actions"] = check_actions(result, self.action_dim)
        return result

    def reset(self) -> None:
        reply = self._request({"endpoint": "reset"})
        if isinstance(reply, str) and reply != RESET_OK:
            raise BackendError(f"policy server reset failed: {reply[:2000]}")

    def metadata(self) -> dict[str, Any]:
        return {
            **self.server_metadata,
            "backend": "websocket",
            "uri": self.uri,
            "model_id": str(self.server_metadata.get("model_id", self.uri)),
        }

    def close(self) -> None:
        self._drop()
