"""Session and order filtering of chunks (pure).

A chunk is accepted only from the current session with a chunk_id greater than the last accepted one. A new,
never-seen session id replaces the current one (the policy was reset); ids of replaced sessions are remembered
so a late chunk from an old session is ignored instead of re-opening it.
"""

from __future__ import annotations

from collections import deque


class SessionFilter:
    def __init__(self, remember: int = 64) -> None:
        self.session: str | None = None
        self.last_chunk_id: int | None = None
        self._retired: deque[str] = deque(maxlen=remember)

    def check(self, session_id: str, chunk_id: int) -> str | None:
        """None if the chunk may be used, else the reason it is ignored (does not change state)."""
        if not session_id:
            return "empty session_id"
        if session_id in self._retired:
            return f"chunk from old session {session_id!r} (current {self.session!r})"
        if session_id == self.session and self.last_chunk_id is not None and chunk_id <= self.last_chunk_id:
            return f"out-of-order chunk {chunk_id} (last accepted {self.last_chunk_id}) in session {session_id!r}"
        return None

    def commit(self, session_id: str, chunk_id: int) -> None:
        """Record an accepted chunk (call only after the chunk was turned into a plan)."""
        if session_id != self.session:
            if self.session is not None:
                self._retired.append(self.session)
            self.session = session_id
        self.last_chunk_id = chunk_id
