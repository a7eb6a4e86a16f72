"""Writes to an MLflow tracking store that never fail training: buffered while the store is away, sent when it is back.

Lightning's ``MLFlowLogger`` calls ``MlflowClient`` directly: a tracking server that restarts, a network that
drops or a locked SQLite file raises inside ``trainer.fit`` and ends a run that had nothing wrong with it (and
``MlflowClient`` itself first retries for minutes with exponential back-off). MLflow's own asynchronous logging
(``synchronous=False``) does not help: its queue drops what fails. :class:`TrackingBuffer` keeps every write in
order, sends what it can, and on a failure of the store (not of the request: a param whose value may not change
is dropped with a note) keeps the rest for later: the next write after a pause that doubles up to five minutes,
and :meth:`TrackingBuffer.drain` at the end of the run, which tries until its timeout. One line on stderr says
when the store went away and one when it came back; neither names credentials (the URI is printed without its
user and password).
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

__all__ = ["TrackingBuffer", "is_store_failure", "public_uri"]

#: MLflow error codes that say the store is away or overloaded, not that the request was wrong.
_STORE_FAILURES = frozenset(
    {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED"}
)
#: While tracking goes through buffering, MLflow's HTTP retries are short: the buffer is the retry.
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}  # fmt: skip
_FIRST_PAUSE_S = 5.0
_LONGEST_PAUSE_S = 300.0

#: One buffered write: called with the client and the run id once the run exists.
Write = Callable[["MlflowClient", str], None]


def public_uri(uri: str) -> str:
    """``uri`` without a user name or password (``http://user:secret@host`` -> ``http://host``), for messages."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def is_store_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says the tracking store is unreachable or failing (try again later), rather than that the
    request itself was refused (``INVALID_PARAMETER_VALUE``, ``RESOURCE_DOES_NOT_EXIST``: no use repeating it)."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        return exc.error_code in _STORE_FAILURES
    # a local file gone (an artifact's temporary folder) is the request's fault, not the store's
    return isinstance(exc, (ConnectionError, TimeoutError)) or type(exc).__module__.startswith(
        ("requests", "urllib3", "sqlalchemy")
    )


@contextmanager
def _short_http_retries() -> Iterator[None]:
    """MLflow's HTTP retry settings (read by every request) shortened for the call, unless the user set them."""
    added = [k for k in _HTTP_DEFAULTS if k not in os.environ]
    for key in added:
        os.environ[key] = _HTTP_DEFAULTS[key]
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


class TrackingBuffer:
    """The writes of one MLflow run, in order, sent as soon as the store takes them.

    Args:
        uri: the tracking URI (for messages).
        client: makes the ``MlflowClient`` (called once, at the first send).
        open_run: given the client, returns the run id, creating or re-opening the run (called until it
            succeeds; the writes wait for it).
    """

    def __init__(self, uri: str, client: Callable[[], MlflowClient], open_run: Callable[[MlflowClient], str]) -> None:
        self.uri = uri
        self._make_client = client
        self._client: MlflowClient | None = None
        self._open_run = open_run
        self.run_id: str | None = None
        self.pending: deque[tuple[str, Write]] = deque()
        self.away_since: float | None = None
        self._pause = _FIRST_PAUSE_S
        self._retry_at = 0.0
        self.dropped: list[str] = []

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def add(self, what: str, write: Write) -> None:
        """Queue ``write`` (``what`` names it in messages) and send what can be sent now; never raises."""
        self.pending.append((what, write))
        self.send_if_due()

    def send_if_due(self) -> None:
        """:meth:`send`, unless the store is away and the pause since the last try has not passed."""
        if self.away_since is None or time.monotonic() >= self._retry_at:
            self.send()

    def call(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Queue ``client.<method>(run_id, *args, **kwargs)`` for this buffer's run."""

        def write(client: MlflowClient, run_id: str) -> None:
            getattr(client, method)(run_id, *args, **kwargs)

        self.add(method, write)

    def send(self) -> bool:
        """Send the pending writes in order; ``True`` when none is left. A store failure keeps the rest."""
        try:
            with _short_http_retries():
                if self.run_id is None:
                    self.run_id = self._open_run(self.client)
                while self.pending:
                    what, write = self.pending[0]
                    try:
                        write(self.client, self.run_id)
                    except Exception as exc:
                        if is_store_failure(exc):
                            raise
                        self._drop(what, exc)
                    self.pending.popleft()
        except Exception as exc:
            if not is_store_failure(exc):  # a bug or a refused run: tracking stops, training goes on
                self._drop("run", exc)
                self.pending.clear()
                return True
            self._went_away(exc)
            return False
        self._came_back()
        return True

    def drain(self, timeout_s: float) -> bool:
        """Try to send everything for up to ``timeout_s`` seconds (the end of a run); ``True`` when all went."""
        deadline = time.monotonic() + timeout_s
        while not self.send():
            if time.monotonic() + 1.0 > deadline:
                n = len(self.pending)
                _say(f"{n} tracking write(s) not sent to {public_uri(self.uri)} after {timeout_s:.0f} s; the run "
                     "folder's metrics.csv and fingerprint.json hold the same")  # fmt: skip
                return False
            time.sleep(1.0)
        return True

    def _went_away(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self.away_since is None:
            self.away_since = now
            self._pause = _FIRST_PAUSE_S
            _say(f"MLflow tracking store {public_uri(self.uri)} unreachable ({type(exc).__name__}); training goes "
                 "on, metrics are kept and sent when it is back or at the end")  # fmt: skip
        else:
            self._pause = min(self._pause * 2.0, _LONGEST_PAUSE_S)
        self._retry_at = now + self._pause

    def _came_back(self) -> None:
        if self.away_since is not None:
            print(
                f"medimg: MLflow tracking store {public_uri(self.uri)} is back after "
                f"{time.monotonic() - self.away_since:.0f} s; the kept metrics are sent",
                file=sys.stderr,
                flush=True,
            )
            self.away_since = None

    def _drop(self, what: str, exc: BaseException) -> None:
        # the error code only: MLflow's message may quote values (paths) of the run
        code = getattr(exc, "error_code", None) or type(exc).__name__
        self.dropped.append(f"{what}: {code}")
        _say(f"MLflow tracking: {what} refused by {public_uri(self.uri)} ({code}); left out, training goes on")


def _say(line: str) -> None:
    print(f"medimg: warning: {line}", file=sys.stderr, flush=True)
