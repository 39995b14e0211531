"""``wait``: an image's Server-Sent Events (``GET /v1/images/{key}/events``) read until
``done`` or ``failed``, within a deadline. The decisions live here; the clients only open
the stream, hand over its lines, and sleep when told to.

The stream is opened again, and nothing is missed by it (the API sends the current state
first on every connection):

- after a keepalive comment (every 15 s on an idle stream): the read timeout is the time left
  when the stream opened, and only a new connection can shorten it, so the deadline holds;
- after a 404, a moment later: the key is not known yet (a presigned upload to S3 is announced
  by the bucket's notification, just after it lands), so a key never uploaded waits out the
  timeout, then ``WaitTimeout``;
- after a 503 (the API's limit of open streams), when its ``Retry-After`` says;
- after a stream cut off (the API restarted behind a balancer), a moment later.
"""

from __future__ import annotations

import json
import time

import httpx

from ._calls import Calls, checked
from .errors import ProcessingFailed, WaitTimeout
from .models import ImageState

RETRIED = (httpx.TimeoutException, httpx.ReadError, httpx.RemoteProtocolError)
"""Errors after which ``wait`` opens the stream again (a timeout: at the deadline, it ends)."""
_FIRST_PAUSE, _MAX_PAUSE = 0.25, 2.0


class EventReader:
    """Server-Sent Events, a line at a time: the fields pixpipe sends (``event``, ``data``)."""

    def __init__(self) -> None:
        self._event, self._data = "", list[str]()

    def feed(self, line: str) -> tuple[str, str] | None:
        """``(event, data)`` when ``line`` (blank) ends an event; comments are skipped."""
        if not line:
            event, data = self._event or "message", "\n".join(self._data)
            self._event, self._data = "", []
            return (event, data) if data else None
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


class Waiting:
    """One ``wait(key, timeout)``: its deadline, its requests, what each line of the stream
    means, and how long to pause between connections."""

    def __init__(self, calls: Calls, key: str, timeout: float, connect_timeout: float) -> None:
        self.calls, self.key, self.timeout = calls, key, timeout
        self.deadline = time.monotonic() + timeout
        self.connect_timeout = connect_timeout
        self.last: ImageState | None = None
        self._reader = EventReader()
        self._pause, self._next_pause = 0.0, _FIRST_PAUSE

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def outcome(self) -> ImageState | None:
        """The final state once seen (``failed`` raises ``ProcessingFailed``), else ``None``."""
        if self.last is None or not self.last.final:
            return None
        if self.last.state == "failed":
            raise ProcessingFailed(self.last)
        return self.last

    def request(self) -> httpx.Request:
        """The next connection's request; ``WaitTimeout`` when the time is up."""
        left = self.left()
        if left <= 0:
            raise WaitTimeout(self.key, self.timeout, self.last)
        self._reader = EventReader()
        return self.calls.events(self.key, left, min(left, self.connect_timeout))

    def opened(self, response: httpx.Response) -> bool:
        """Whether to read this response's lines (else pause, then ask again); an error other
        than 404 or 503 is raised (its body read first)."""
        if response.status_code == 404:
            self._pause, self._next_pause = self._next_pause, min(_MAX_PAUSE, self._next_pause * 2)
            return False
        if response.status_code == 503:
            retry = response.headers.get("retry-after", "")
            self._pause = float(retry) if retry.isdigit() else _MAX_PAUSE
            return False
        checked(response)
        self._pause, self._next_pause = _FIRST_PAUSE, _FIRST_PAUSE
        return True

    def line(self, line: str) -> bool:
        """Take one line; ``True`` when this connection has served its turn (a final state,
        or a keepalive: see the module's docstring)."""
        if line.startswith(":"):
            self._pause = 0.0
            return True
        event = self._reader.feed(line)
        if event is None or event[0] != "state":
            return False
        self.last = ImageState.from_json(json.loads(event[1]))
        return self.last.final

    def pause(self) -> float:
        """Seconds to sleep before the next connection (never past the deadline)."""
        return max(0.0, min(self._pause, self.left()))


__all__ = ["RETRIED", "EventReader", "Waiting"]
