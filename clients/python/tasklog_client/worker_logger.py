"""WorkerLogger: sends a subtask's log lines without ever slowing down or failing the task."""

import asyncio
import json
import logging
import re
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, List, Optional

import httpx

from ._common import (
    LEVELS,
    api_error,
    auth_headers,
    backoff_delay,
    base_url_for,
    canonical_uuid,
    now_iso,
    resolve_token,
    retry_after_seconds,
)

_problems = logging.getLogger("tasklog_client")

#: A 422's `details[].path` naming one line of a batch: `/logs/<index>/...`.
_BATCH_INDEX = re.compile(r"^/logs/(\d+)(/|$)")


@dataclass(frozen=True)
class DeliveryError:
    """Why the last request failed: `status` is None for network errors and timeouts."""

    status: Optional[int]
    code: str
    message: str


@dataclass(frozen=True)
class LoggerStats:
    #: Lines the server stored.
    sent: int
    #: Lines the server refused with a 4xx other than 408/429 (retrying cannot help), or that could not be encoded.
    rejected: int
    #: Oldest lines dropped because the buffer was full.
    dropped: int
    #: Lines given up after `max_attempts`, or still unsent when `close()` timed out.
    failed: int
    #: Requests repeated after a network error, a timeout, a 408, 429 or 5xx.
    retries: int
    #: Lines buffered or in flight.
    pending: int
    #: Watchers reached by the last stored batch.
    broadcasted: int
    #: Id of the newest stored line.
    last_id: Optional[str]
    last_error: Optional[DeliveryError]


class WorkerLogger:
    """Batches a subtask's log lines to `POST /api/v1/subtasks/{id}/logs`.

    `debug/info/warning/error/log` are plain (not async) calls that return at once and never
    raise: the line is stamped with the current time and buffered. A background task on the
    running event loop sends the buffer in batches (when `max_batch_size` lines wait, or
    `flush_interval` seconds after the oldest was logged), one request at a time so order is
    kept. Network errors, timeouts, 408, 429 and 5xx are retried with exponential backoff and
    jitter, waiting `Retry-After` when the server sends it; each batch carries one
    `Idempotency-Key`, the same on every retry, so a server that records keys stores it once.
    Other 4xx answers are final: the lines are counted as rejected (only the lines a 422 names,
    when it names them). The buffer holds `max_buffer` lines; past that the oldest are dropped
    and counted. Problems are reported once per cause through `on_problem` (default: a warning
    on the `tasklog_client` logger).

    Create it (or log a first line) inside the running event loop; then log() may also be
    called from other threads (`run_in_executor` work): their lines are handed to the loop.
    End with `await close()` (or `async with WorkerLogger(...) as log:`).
    """

    def __init__(
        self,
        subtask_id: str,
        base_url: str = "http://localhost:8000",
        *,
        token: Optional[str] = None,
        flush_interval: float = 0.25,
        max_batch_size: int = 100,
        max_batch_bytes: int = 1024 * 1024,
        max_buffer: int = 10_000,
        max_attempts: int = 8,
        backoff_base: float = 0.25,
        backoff_max: float = 15.0,
        request_timeout: float = 10.0,
        on_problem: Optional[Callable[[str], Any]] = None,
    ):
        canonical = canonical_uuid(subtask_id)
        if canonical is None:
            raise ValueError(f"Invalid subtask id {subtask_id!r}: expected a UUID")
        self.subtask_id = canonical
        self.url = f"{base_url_for(base_url, 'http')}/api/v1/subtasks/{canonical}/logs"
        self.flush_interval = flush_interval
        self.max_batch_size = max(1, max_batch_size)
        self.max_batch_bytes = max_batch_bytes
        self.max_buffer = max(1, max_buffer)
        self.max_attempts = max(1, max_attempts)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.request_timeout = request_timeout
        self._on_problem = on_problem or (lambda message: _problems.warning("tasklog: %s", message))
        self._headers = {"Content-Type": "application/json", **auth_headers(resolve_token(token))}

        self._buffer: Deque[str] = deque()
        self._in_flight: List[str] = []
        self._oldest_at = 0.0  # loop time when the oldest buffered line was logged
        self._sender: Optional["asyncio.Task[None]"] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None  # the loop the sender runs on
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            pass  # bound by the first log() or flush() made inside a loop
        self._wake: Optional[asyncio.Event] = None
        self._flushing = 0
        self._closed = False
        self._client: Optional[httpx.AsyncClient] = None
        self._reported: set = set()
        self._counts: Dict[str, Any] = dict(
            sent=0, rejected=0, dropped=0, failed=0, retries=0, broadcasted=0, last_id=None, last_error=None
        )

    # -- the task's side: never blocks, never raises -------------------------------------------

    def debug(self, message: str, metadata: Optional[Dict[str, Any]] = None) -> None:
        self.log("debug", message, metadata)

    def info(self, message: str, metadata: Optional[Dict[str, Any]] = None) -> None:
        self.log("info", message, metadata)

    def warning(self, message: str, metadata: Optional[Dict[str, Any]] = None) -> None:
        self.log("warning", message, metadata)

    def error(self, message: str, metadata: Optional[Dict[str, Any]] = None) -> None:
        self.log("error", message, metadata)

    def log(self, level: str, message: str, metadata: Optional[Dict[str, Any]] = None) -> None:
        """Buffers one line. Metadata values JSON cannot encode (a datetime, say) are sent as str()."""
        try:
            if self._closed:
                return self._report("closed", "a line was logged after close() and is ignored")
            try:
                if level not in LEVELS:
                    raise ValueError(f"unknown level {level!r} (expected one of {', '.join(LEVELS)})")
                if metadata is not None and not isinstance(metadata, dict):
                    raise ValueError("metadata must be a dict")
                line = json.dumps(
                    {"level": level, "message": str(message), "metadata": metadata, "timestamp": now_iso()},
                    ensure_ascii=False,
                    allow_nan=False,
                    separators=(",", ":"),
                    default=str,
                )
            except (TypeError, ValueError, RecursionError) as error:
                self._counts["rejected"] += 1
                return self._report("encode", f"a line could not be encoded and is dropped: {error}")
            if self._in_another_thread():
                assert self._loop is not None
                self._loop.call_soon_threadsafe(self._enqueue, line)
            else:
                self._enqueue(line)
        except Exception as error:  # noqa: BLE001 - logging must never fail the task
            self._report("internal", f"unexpected error while logging: {error!r}")

    def _enqueue(self, line: str) -> None:
        if self._closed and (self._sender is None or self._sender.done()):
            # From a thread, handed over as close() finished: nothing would send it any more.
            return self._report("closed", "a line was logged after close() and is ignored")
        if len(self._buffer) >= self.max_buffer:
            self._buffer.popleft()
            self._counts["dropped"] += 1
            self._report("dropped", f"more than {self.max_buffer} lines waiting: dropping the oldest (see stats.dropped)")
        self._buffer.append(line)
        self._start_sender()

    def _in_another_thread(self) -> bool:
        """Whether log() runs outside the event loop the logger works on (in a worker thread, say)."""
        try:
            asyncio.get_running_loop()
            return False
        except RuntimeError:
            return self._loop is not None and self._loop.is_running()

    @property
    def stats(self) -> LoggerStats:
        return LoggerStats(pending=len(self._buffer) + len(self._in_flight), **self._counts)

    # -- the owner's side ------------------------------------------------------------------------

    async def flush(self) -> LoggerStats:
        """Sends every buffered line now; returns once they are stored or given up. Never raises."""
        self._flushing += 1
        try:
            while self._buffer or (self._sender is not None and not self._sender.done()):
                self._start_sender()
                if self._sender is None:
                    break
                self._wake_sender()
                # wait() neither cancels the sender when this flush is cancelled nor raises if
                # close() cancelled the sender meanwhile.
                await asyncio.wait([self._sender])
        finally:
            self._flushing -= 1
        return self.stats

    async def close(self, timeout: Optional[float] = None) -> LoggerStats:
        """Flushes and stops accepting lines. After `timeout` seconds (default: no limit beyond
        `max_attempts`) the lines still unsent are counted as failed. Never raises."""
        self._closed = True
        try:
            await asyncio.wait_for(self.flush(), timeout)
        except asyncio.TimeoutError:
            await self._stop_sender()
            unsent = len(self._buffer) + len(self._in_flight)
            self._buffer.clear()
            self._in_flight = []
            if unsent:
                self._give_up(unsent, DeliveryError(None, "closed", "close() timed out before these lines were sent"))
        finally:
            if self._client is not None:
                client, self._client = self._client, None
                await client.aclose()
        return self.stats

    async def __aenter__(self) -> "WorkerLogger":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    # -- the sender ------------------------------------------------------------------------------

    def _start_sender(self) -> None:
        """Starts the background sender if lines wait and none runs. Without a running loop the
        lines stay buffered until the next log() or flush() made inside one."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._loop = loop
        if self._sender is not None and not self._sender.done() and self._sender.get_loop() is loop:
            if len(self._buffer) >= self.max_batch_size:
                self._wake_sender()
            return
        if not self._buffer:
            return
        self._oldest_at = loop.time()
        self._wake = asyncio.Event()
        self._sender = loop.create_task(self._run())

    def _wake_sender(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _stop_sender(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None and not sender.done():
            sender.cancel()
            try:
                await sender
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        """Sends batches until the buffer is empty, then ends (the next log() starts another)."""
        loop = asyncio.get_running_loop()
        try:
            while self._buffer:
                urgent = self._flushing > 0 or self._closed or len(self._buffer) >= self.max_batch_size
                wait = self._oldest_at + self.flush_interval - loop.time()
                if not urgent and wait > 0:
                    assert self._wake is not None
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), wait)
                    except asyncio.TimeoutError:
                        pass
                    continue
                self._in_flight = self._take_batch()
                await self._deliver()
                self._in_flight = []
                # Lines logged meanwhile have waited for the request: they go without further delay.
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - the sender must never die with lines buffered silently
            self._give_up(len(self._in_flight), DeliveryError(None, "internal", repr(error)))
            self._in_flight = []

    def _take_batch(self) -> List[str]:
        """The oldest lines that fit in one request (at least one)."""
        batch: List[str] = []
        size = 0
        while self._buffer and len(batch) < self.max_batch_size:
            size += len(self._buffer[0].encode()) + 1
            if batch and size > self.max_batch_bytes:
                break
            batch.append(self._buffer.popleft())
        return batch

    async def _deliver(self) -> None:
        """Delivers `_in_flight` until it is stored, refused or given up."""
        key = str(uuid.uuid4())
        attempt = 0
        while True:
            attempt += 1
            outcome = await self._post(self._in_flight, key)
            kind = outcome["kind"]
            if kind == "stored":
                body = outcome["body"]
                self._counts["sent"] += int(body.get("accepted", len(self._in_flight)))
                self._counts["broadcasted"] = int(body.get("broadcasted", 0))
                self._counts["last_id"] = body.get("last_id")
                return
            error: DeliveryError = outcome["error"]
            self._counts["last_error"] = error
            if kind == "rejected":
                bad = outcome["bad_indexes"]
                partial = 0 < len(bad) < len(self._in_flight)
                rejected = len(bad) if partial else len(self._in_flight)
                self._counts["rejected"] += rejected
                self._report(
                    f"rejected:{error.status}",
                    f"the server refused {rejected} line(s) with {error.status} ({error.message}); they are dropped, not retried",
                )
                if not partial:
                    return
                # A batch is all or nothing: send the others again, as a new batch with its own key.
                self._in_flight = [line for i, line in enumerate(self._in_flight) if i not in bad]
                key = str(uuid.uuid4())
                attempt = 0
                continue
            if attempt >= self.max_attempts:
                return self._give_up(len(self._in_flight), error)
            self._counts["retries"] += 1
            delay = outcome["delay"]
            await asyncio.sleep(delay if delay is not None else backoff_delay(attempt - 1, self.backoff_base, self.backoff_max))

    async def _post(self, lines: List[str], key: str) -> Dict[str, Any]:
        if self._client is None:
            self._client = httpx.AsyncClient()
        body = '{"logs":[' + ",".join(lines) + "]}"
        try:
            response = await self._client.post(
                self.url,
                content=body.encode(),
                headers={**self._headers, "Idempotency-Key": key},
                timeout=self.request_timeout,
            )
        except Exception as error:  # noqa: BLE001 - network errors, timeouts, a connection cut while reading
            return {"kind": "retry", "error": DeliveryError(None, "network", str(error) or type(error).__name__), "delay": None}
        if 200 <= response.status_code < 300:
            try:
                return {"kind": "stored", "body": response.json()}
            except ValueError as error:
                return {"kind": "retry", "error": DeliveryError(response.status_code, "network", str(error)), "delay": None}
        failure = api_error(response.status_code, response.text)
        error = DeliveryError(response.status_code, failure.code, failure.message)
        if response.status_code in (408, 429) or response.status_code >= 500:
            return {"kind": "retry", "error": error, "delay": retry_after_seconds(response.headers.get("retry-after"))}
        bad = set()
        for detail in failure.details:
            match = _BATCH_INDEX.match(str(detail.get("path", ""))) if isinstance(detail, dict) else None
            if match and int(match.group(1)) < len(lines):
                bad.add(int(match.group(1)))
        return {"kind": "rejected", "error": error, "bad_indexes": bad}

    def _give_up(self, lines: int, error: DeliveryError) -> None:
        self._counts["failed"] += lines
        self._counts["last_error"] = error
        self._report("failed", f"gave up on {lines} line(s): {error.message}")

    def _report(self, cause: str, message: str) -> None:
        if cause in self._reported:
            return
        self._reported.add(cause)
        try:
            self._on_problem(message)
        except Exception:  # noqa: BLE001 - a failing reporter must not fail the task
            pass
