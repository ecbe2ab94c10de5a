"""The project's exception hierarchy (stdlib only).

Every error the workspace raises on purpose derives from :class:`DreamZeroError`, so a boundary
(a CLI, a lifecycle transition, an action result) can turn "our" failures into a status with one
``except`` clause while genuine bugs still surface as ordinary exceptions.
"""

from __future__ import annotations


class DreamZeroError(Exception):
    """Base class of every deliberate error in the workspace."""


class ImageDecodeError(DreamZeroError, ValueError):
    """An image message could not be turned into an (H, W, 3) uint8 RGB array.

    The message says which field was wrong (encoding, size, step, payload) so the user can fix the
    publisher or the recording instead of guessing.
    """


class DatasetError(DreamZeroError):
    """Base class of the data pipeline's errors (rosbags -> training datasets)."""


class MappingError(DatasetError, ValueError):
    """A conversion mapping (``config/datasets/*.yaml``) is invalid or does not fit the bag."""


class BagReadError(DatasetError):
    """A bag is corrupt, truncated or unreadable; the message names the file and what was read."""


class AlignmentError(DatasetError):
    """A stream has a gap or misalignment beyond the configured tolerance."""


# --- runtime and backends (policy runtime engineer) -------------------------------------------


class IoSpecError(DreamZeroError, ValueError):
    """An embodiment I/O spec (``config/embodiments/*.yaml``) is invalid; the message starts with
    the dotted path of the offending field."""


class ObservationError(DreamZeroError, ValueError):
    """Inputs cannot form a model observation right now (missing, stale, skewed, malformed).

    ``reason`` is a short machine-readable code (``missing``, ``stale``, ``skew``, ``bad_input``,
    ``time_backwards``, ``history``) for status counters; the message is for humans.
    """

    def __init__(self, message: str, reason: str = "bad_input") -> None:
        super().__init__(message)
        self.reason = reason


class BackendError(DreamZeroError, RuntimeError):
    """A policy backend failed (model error, server error frame, protocol violation)."""


class BackendTimeoutError(BackendError, TimeoutError):
    """A policy backend did not answer within its deadline."""


class BackendConnectionError(BackendError, ConnectionError):
    """A remote policy server could not be reached (after the bounded reconnect attempts)."""
