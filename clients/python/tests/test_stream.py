import asyncio
import unittest
from typing import Any, Callable, List

from support import UNKNOWN_ID, WS_URL, Stub, closed_port, control, create_task, needs_control, needs_server, post_logs
from tasklog_client import LogStream, StreamClosed, StreamEvent, TasklogApi


class Follower:
    """Reads a LogStream in the background, keeping every event, until stopped."""

    def __init__(self, stream: LogStream):
        self.stream = stream
        self.events: List[StreamEvent] = []
        self.error: Any = None
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            async for event in self.stream:
                self.events.append(event)
        except StreamClosed as error:
            self.error = error

    def of_type(self, kind: str) -> List[StreamEvent]:
        return [e for e in self.events if e.type == kind]

    def messages(self) -> List[str]:
        return [e.data["message"] for e in self.of_type("log")]

    async def until(self, check: Callable[["Follower"], bool], timeout: float = 15.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not check(self):
            if self.task.done() or loop.time() > deadline:
                raise AssertionError(f"stream did not get there; events: {[(e.type, e.data) for e in self.events]}")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        await self.stream.close()
        await asyncio.wait_for(self.task, 5)


@needs_server
class Streaming(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        self.task = await create_task()
        self.task_id = self.task["task_id"]
        self.subtask_id = self.task["subtasks"][0]["subtask_id"]

    async def test_history_and_level_then_live_logs_and_status_changes(self):
        await post_logs(self.subtask_id, [("debug", "old debug"), ("info", "old info"), ("warning", "old warning")])
        follower = Follower(LogStream(self.task_id, WS_URL, history=10, level="info"))
        await follower.until(lambda f: len(f.messages()) == 2)
        await post_logs(self.subtask_id, [("debug", "live debug"), ("error", "live error")])
        async with TasklogApi(WS_URL) as api:  # any scheme works for either client
            await api.update_subtask(self.subtask_id, status="in_progress", worker_name="builder-7")
        await follower.until(lambda f: len(f.of_type("status")) == 1)
        await follower.stop()
        self.assertEqual(follower.messages(), ["old info", "old warning", "live error"])
        self.assertEqual(follower.events[0].type, "open")
        self.assertEqual(follower.events[1].type, "subscribed")
        status = follower.of_type("status")[0].data
        self.assertEqual(
            (status["subtask_id"], status["status"], status["worker_name"]), (self.subtask_id, "in_progress", "builder-7")
        )
        self.assertIsNone(follower.error)

    async def test_since_replays_only_later_logs(self):
        first = await post_logs(self.subtask_id, [("info", "a"), ("info", "b")])
        await post_logs(self.subtask_id, [("info", "c")])
        follower = Follower(LogStream(self.task_id, WS_URL, since=first["first_id"]))
        await follower.until(lambda f: len(f.messages()) == 2)
        await follower.stop()
        self.assertEqual(follower.messages(), ["b", "c"])
        self.assertIs(follower.stream.recovered, True)
        self.assertEqual(follower.of_type("gap"), [])

    @needs_control
    async def test_resumes_with_since_after_the_server_drops_the_connection_no_gap_no_duplicate(self):
        for code in (1012, 1013):
            with self.subTest(code=code):
                task = await create_task()
                subtask_id = task["subtasks"][0]["subtask_id"]
                follower = Follower(LogStream(task["task_id"], WS_URL, backoff_base=0.3))
                await follower.until(lambda f: len(f.of_type("subscribed")) == 1)
                await post_logs(subtask_id, [("info", f"before {i}") for i in range(3)])
                await follower.until(lambda f: len(f.messages()) == 3)
                await control("/streams/close", code=code)
                # Written while the client is away: it reconnects at least 150 ms later.
                await post_logs(subtask_id, [("info", f"while away {i}") for i in range(5)])
                await follower.until(lambda f: len(f.of_type("subscribed")) == 2)
                await post_logs(subtask_id, [("info", "after")])
                await follower.until(lambda f: "after" in f.messages())
                await follower.stop()
                expected = [f"before {i}" for i in range(3)] + [f"while away {i}" for i in range(5)] + ["after"]
                self.assertEqual(follower.messages(), expected)
                self.assertEqual(follower.of_type("close")[0].data["code"], code)
                self.assertEqual(follower.stream.reconnects, 1)
                # The second connection asked for the logs after the last one seen.
                self.assertIn(f"since={follower.of_type('log')[2].data['id']}", follower.of_type("open")[1].data["url"])
                self.assertIs(follower.stream.recovered, True)
                self.assertEqual(follower.of_type("gap"), [])

    async def test_a_resume_after_trimmed_lines_reports_the_gap(self):
        # The server under test keeps 200 logs per task (LOG_HISTORY_MAX): 250 later ones trim the first.
        first = await post_logs(self.subtask_id, [("info", "first")])
        await post_logs(self.subtask_id, [("info", f"later {i}") for i in range(250)])
        follower = Follower(LogStream(self.task_id, WS_URL, since=first["last_id"]))
        await follower.until(lambda f: len(f.messages()) == 200)
        await follower.stop()
        subscribed = follower.of_type("subscribed")[0]
        self.assertIs(subscribed.data["recovered"], False)
        self.assertEqual(follower.of_type("gap")[0].data, {"task_id": self.task_id, "since": first["last_id"]})
        self.assertEqual((follower.stream.recovered, follower.stream.gaps), (False, 1))
        self.assertEqual(follower.messages(), [f"later {i}" for i in range(50, 250)])

    async def test_an_unknown_task_ends_with_close_code_1008(self):
        stream = LogStream(UNKNOWN_ID, WS_URL)
        with self.assertRaises(StreamClosed) as raised:
            async for _ in stream:
                pass
        self.assertEqual(raised.exception.code, 1008)
        self.assertIn(f"Task {UNKNOWN_ID} not found", raised.exception.reason)

    async def test_the_token_travels_in_the_query_and_never_in_events(self):
        stream = LogStream(self.task_id, WS_URL, token="secret-token", level="warning", history=5)
        self.assertIn("token=secret-token", stream.url())
        follower = Follower(stream)
        await follower.until(lambda f: len(f.of_type("subscribed")) == 1)
        await follower.stop()
        self.assertNotIn("secret-token", follower.of_type("open")[0].data["url"])
        self.assertIn("level=warning", follower.of_type("open")[0].data["url"])


class Arguments(unittest.TestCase):
    def test_ids_and_levels_are_checked_before_connecting(self):
        with self.assertRaises(ValueError):
            LogStream("not-a-uuid")
        with self.assertRaises(ValueError):
            LogStream(UNKNOWN_ID, level="loud")
        stream = LogStream(UNKNOWN_ID.upper().replace("-", ""), "https://example.test/")
        self.assertEqual(stream.url(), f"wss://example.test/api/v1/ws/tasks/{UNKNOWN_ID}/logs")


class WithoutTheServer(unittest.IsolatedAsyncioTestCase):
    async def events_until_closed(self, stream: LogStream):
        events = []
        with self.assertRaises(StreamClosed) as raised:
            async for event in stream:
                events.append(event)
        return events, raised.exception

    async def test_an_unreachable_server_is_retried_with_backoff_then_given_up(self):
        stream = LogStream(UNKNOWN_ID, f"ws://127.0.0.1:{closed_port()}", max_attempts=2, backoff_base=0.01)
        events, closed = await self.events_until_closed(stream)
        self.assertEqual([e.type for e in events], ["close", "reconnecting", "close", "reconnecting", "close"])
        self.assertTrue(all(e.data["error"] for e in events if e.type == "close"))
        self.assertEqual([e.data["attempt"] for e in events if e.type == "reconnecting"], [1, 2])
        self.assertIn("gave up after 2 reconnection attempts", str(closed))

    async def test_a_refused_upgrade_ends_the_stream_unless_the_server_is_busy(self):
        busy = {"error": "rate_limited", "message": "Too many connections"}
        forbidden = {"error": "forbidden", "message": "Origin not allowed"}
        stub = Stub([(429, {}, busy), (403, {}, forbidden)])
        self.addCleanup(stub.stop)
        stream = LogStream(UNKNOWN_ID, stub.url, token="t0k", backoff_base=0.01, max_attempts=3)
        events, closed = await self.events_until_closed(stream)
        self.assertEqual([e.type for e in events], ["close", "reconnecting"])  # 429: try again
        self.assertEqual(closed.code, 403)  # 403: final
        self.assertEqual([r["path"] for r in stub.requests], [f"/api/v1/ws/tasks/{UNKNOWN_ID}/logs?token=t0k"] * 2)

    async def test_close_cuts_short_the_wait_before_a_reconnection(self):
        follower = Follower(LogStream(UNKNOWN_ID, f"ws://127.0.0.1:{closed_port()}", backoff_base=60, backoff_max=60))
        await follower.until(lambda f: len(f.of_type("reconnecting")) == 1)
        self.assertGreaterEqual(follower.of_type("reconnecting")[0].data["delay"], 30)
        await follower.stop()  # within its 5 s, not after the 30 to 60 s wait
        self.assertIsNone(follower.error)
