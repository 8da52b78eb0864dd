"""LogStream: follows one task's logs over WebSocket, resuming after every dropped connection."""

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Dict, Iterator, Optional
from urllib.parse import urlencode

import websockets

from ._common import LEVELS, backoff_delay, base_url_for, canonical_uuid, log_id_key, parse_iso_ms, resolve_token

#: Close codes after which reconnecting cannot help: unknown task or invalid query (1008),
#: missing or invalid token (4001), token not allowed to read the task (4003).
FINAL_CLOSE_CODES = (1008, 4001, 4003)


@dataclass(frozen=True)
class StreamEvent:
    """One thing that happened on the stream.

    `type` is a server frame type (`subscribed`, `log`, `status`, `error`, `unsubscribed`) with the
    frame's `data` and `timestamp`, or one the client adds:
    - `open` `{url}`: a connection was opened (the token is left out of the url);
    - `gap` `{task_id, since}`: the server no longer held every log after `since` (trimmed or
      expired), so some lines are missing; `subscribed` carries `recovered: false` just before;
    - `close` `{code, reason, error}`: a connection was lost or could not open (`error` says
      why), and another will be tried;
    - `reconnecting` `{attempt, delay}`: the next attempt, in `delay` seconds.
    """

    type: str
    data: Dict[str, Any] = field(default_factory=dict)
    timestamp: Optional[str] = None


class StreamClosed(Exception):
    """The stream ended for good: a final close code (1008 unknown task, 4001/4003 token), a
    refused handshake (`code` is then the HTTP status), or reconnection given up."""

    def __init__(self, code: Optional[int], reason: str):
        super().__init__(f"{reason} (close code {code})" if code else reason)
        self.code = code
        self.reason = reason


class LogStream:
    """An async iterator over a task's stream `/api/v1/ws/tasks/{id}/logs`.

        async with LogStream(task_id, "ws://localhost:8000", history=20, level="info") as stream:
            async for event in stream:
                if event.type == "log":
                    print(event.data["message"])
                elif event.type == "gap":
                    print("some lines expired before they could be replayed")

    After a dropped connection (1012 server restart, 1013 try again later, 1006 cut, or a failed
    connect) it reconnects with exponential backoff and jitter and resumes with
    `since=<last log id seen>`; logs not newer than that id are skipped, so every log is
    yielded once, in id order. Dead connections are found by WebSocket protocol pings.
    `max_attempts` consecutive failures (default: unlimited) end the iteration with
    StreamClosed, as do the final close codes. The token (`token=` or TASKLOG_TOKEN) travels as
    `?token=`, since browsers' WebSockets cannot send headers and the server reads it there.
    """

    def __init__(
        self,
        task_id: str,
        base_url: str = "ws://localhost:8000",
        *,
        since: Optional[str] = None,
        history: Optional[int] = None,
        level: Optional[str] = None,
        token: Optional[str] = None,
        max_attempts: Optional[int] = None,
        backoff_base: float = 0.5,
        backoff_max: float = 15.0,
        open_timeout: float = 10.0,
        ping_interval: float = 15.0,
        ping_timeout: float = 10.0,
    ):
        canonical = canonical_uuid(task_id)
        if canonical is None:
            raise ValueError(f"Invalid task id {task_id!r}: expected a UUID")
        if level is not None and level not in LEVELS:
            raise ValueError(f"Invalid level {level!r}: expected one of {', '.join(LEVELS)}")
        self.task_id = canonical
        self.base_url = base_url_for(base_url, "ws")
        self.level = level
        self.history = history
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.open_timeout = open_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self._token = resolve_token(token)
        #: Id of the newest log yielded: a later log must be greater.
        self.last_id: Optional[str] = since
        #: `recovered` of the last `subscribed` frame that answered a `since` (None before any).
        self.recovered: Optional[bool] = None
        #: Connections lost so far, and gaps reported.
        self.reconnects = 0
        self.gaps = 0
        # Resume point of a task that has shown no log yet: just before it went live.
        self._live_since: Optional[str] = None
        self._ws: Any = None
        self._closing = False
        self._closed: Optional[asyncio.Event] = None  # set by close(): ends a backoff early

    def url(self, with_token: bool = True) -> str:
        """The URL the next connection opens: it resumes after the last log seen, if any."""
        since = self.last_id or self._live_since
        query: Dict[str, Any] = {}
        if since:
            query["since"] = since
        elif self.history is not None:
            query["history"] = self.history
        if self.level:
            query["level"] = self.level
        if with_token and self._token:
            query["token"] = self._token
        base = f"{self.base_url}/api/v1/ws/tasks/{self.task_id}/logs"
        return f"{base}?{urlencode(query)}" if query else base

    async def close(self) -> None:
        """Ends the iteration: closes the connection, or cuts short the wait before the next one."""
        self._closing = True
        if self._closed is not None:
            self._closed.set()
        if self._ws is not None:
            await self._ws.close()

    async def __aenter__(self) -> "LogStream":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self.events()

    async def events(self) -> AsyncIterator[StreamEvent]:
        failures = 0
        self._closed = asyncio.Event()
        while not self._closing:
            asked_since = self.last_id or self._live_since
            code: Optional[int] = None
            reason = ""
            error: Optional[str] = None
            try:
                async with websockets.connect(
                    self.url(),
                    open_timeout=self.open_timeout,
                    ping_interval=self.ping_interval,
                    ping_timeout=self.ping_timeout,
                    close_timeout=2,
                ) as ws:
                    self._ws = ws
                    if self._closing:  # close() ran while connecting
                        return
                    yield StreamEvent("open", {"url": self.url(with_token=False)})
                    try:
                        async for raw in ws:
                            for event in self._handle(raw, asked_since):
                                if event.type == "subscribed":
                                    failures = 0
                                yield event
                    except websockets.ConnectionClosed:
                        pass
                    code, reason = ws.close_code, ws.close_reason or ""
            except websockets.InvalidHandshake as refused:
                status = _handshake_status(refused)
                if status is not None and 400 <= status < 500 and status not in (408, 429):
                    raise StreamClosed(status, f"the server refused the connection: {refused}") from refused
                error = str(refused)
            except (OSError, asyncio.TimeoutError) as failed:
                error = str(failed) or type(failed).__name__
            finally:
                self._ws = None
            if self._closing:
                return
            if code in FINAL_CLOSE_CODES:
                raise StreamClosed(code, reason or "the server closed the stream")
            yield StreamEvent("close", {"code": code, "reason": reason, "error": error})
            self.reconnects += 1
            failures += 1
            if self.max_attempts is not None and failures > self.max_attempts:
                raise StreamClosed(code, f"gave up after {self.max_attempts} reconnection attempts: {error or reason}")
            delay = backoff_delay(failures - 1, self.backoff_base, self.backoff_max)
            yield StreamEvent("reconnecting", {"attempt": failures, "delay": delay})
            try:
                await asyncio.wait_for(self._closed.wait(), delay)
            except asyncio.TimeoutError:
                pass

    def _handle(self, raw: Any, asked_since: Optional[str]) -> Iterator[StreamEvent]:
        try:
            frame = json.loads(raw)
        except ValueError:
            return
        if not isinstance(frame, dict):
            return
        kind, data, timestamp = frame.get("type"), frame.get("data") or {}, frame.get("timestamp")
        if kind == "log":
            log_id = data.get("id")
            if not log_id or data.get("task_id") != self.task_id:
                return
            if self.last_id and log_id_key(log_id) <= log_id_key(self.last_id):
                return  # yielded before the reconnection
            self.last_id = log_id
            yield StreamEvent("log", data, timestamp)
        elif kind == "subscribed":
            if data.get("task_id") != self.task_id:
                return
            if asked_since is not None and "recovered" in data:
                self.recovered = bool(data["recovered"])
            # A task that has shown no log resumes from the moment it went live: a log id made of
            # the frame's time (server clock) minus 1 ms, so a log written in the same ms is not
            # missed. Only the first time: a reconnection that dies before its replay must not skip it.
            live = parse_iso_ms(timestamp) if timestamp else None
            if self.last_id is None and self._live_since is None and live is not None:
                self._live_since = f"{live - 1}-0"
            yield StreamEvent("subscribed", data, timestamp)
            if data.get("recovered") is False and asked_since is not None:
                self.gaps += 1
                yield StreamEvent("gap", {"task_id": self.task_id, "since": asked_since}, timestamp)
        elif kind in ("status", "error", "unsubscribed"):
            yield StreamEvent(kind, data, timestamp)
        # `pong` answers an application ping, which this client does not send.


def _handshake_status(refused: Exception) -> Optional[int]:
    """The HTTP status of a refused handshake, across websockets versions (10: status_code, 14: response)."""
    status = getattr(refused, "status_code", None)
    if status is None:
        status = getattr(getattr(refused, "response", None), "status_code", None)
    return int(status) if status is not None else None
