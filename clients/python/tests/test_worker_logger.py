import asyncio
import os
import time
import unittest
from unittest import mock

from support import (
    ANY_SUBTASK,
    UNKNOWN_ID,
    URL,
    Stub,
    closed_port,
    control,
    create_task,
    eventually,
    history,
    needs_control,
    needs_server,
    stored,
)
from tasklog_client import WorkerLogger


@needs_server
class AgainstTheServer(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        self.task = await create_task()
        self.subtask_id = self.task["subtasks"][0]["subtask_id"]

    async def messages(self):
        return [log["message"] for log in await history(self.task["task_id"])]

    async def test_full_batches_go_at_once_the_rest_waits_for_the_interval_or_flush_in_order(self):
        logger = WorkerLogger(self.subtask_id, URL, max_batch_size=10, flush_interval=60)
        for i in range(25):
            logger.info(f"line {i}", {"i": i})
        # Two full batches go without waiting for the (minute-long) interval; five lines wait.
        await eventually(lambda: _true(logger.stats.sent == 20), what="two batches sent")
        self.assertEqual(await self.messages(), [f"line {i}" for i in range(20)])
        self.assertEqual(logger.stats.pending, 5)
        stats = await logger.close()
        self.assertEqual((stats.sent, stats.pending, stats.failed, stats.retries), (25, 0, 0, 0))
        logs = await history(self.task["task_id"])
        self.assertEqual([log["message"] for log in logs], [f"line {i}" for i in range(25)])
        self.assertEqual(logs[3]["metadata"], {"i": 3})
        self.assertEqual(stats.last_id, logs[-1]["id"])

    async def test_a_partial_batch_goes_after_the_interval_without_flush(self):
        logger = WorkerLogger(self.subtask_id, URL, flush_interval=0.2)
        logger.warning("a")
        logger.error("b")
        await eventually(lambda: _eq(self.messages(), ["a", "b"]), what="lines sent by the interval")
        self.assertEqual([log["level"] for log in await history(self.task["task_id"])], ["warning", "error"])
        await logger.close()

    @needs_control
    async def test_a_redis_outage_past_the_store_deadline_is_retried_without_losing_a_line(self):
        problems = []
        logger = WorkerLogger(
            self.subtask_id, URL, backoff_base=0.2, backoff_max=1.0, max_attempts=30, on_problem=problems.append
        )
        for i in range(5):
            logger.info(f"before {i}")
        self.assertEqual((await logger.flush()).sent, 5)
        # Redis stops answering for 3 s: the server gives up after its 2 s deadline and answers 503.
        await control("/redis/pause", ms=3000)
        for i in range(10):
            logger.info(f"during {i}")
        stats = await logger.flush()
        self.assertEqual((stats.sent, stats.failed, stats.rejected, stats.pending), (15, 0, 0, 0))
        self.assertGreaterEqual(stats.retries, 1)
        self.assertEqual(stats.last_error.status, 503)
        self.assertEqual(problems, [])  # retried, never given up: nothing to report
        expected = [f"before {i}" for i in range(5)] + [f"during {i}" for i in range(10)]
        messages = await self.messages()
        # Every line is stored, in order. A request Redis received before it stopped may still be
        # applied after the 503, so a line can be stored twice until the server applies the
        # Idempotency-Key the logger sends; no line is ever lost or reordered.
        first_seen = list(dict.fromkeys(messages))
        self.assertEqual(first_seen, expected)
        await logger.close()

    async def test_an_unknown_subtask_is_rejected_once_not_retried(self):
        problems = []
        logger = WorkerLogger(UNKNOWN_ID, URL, on_problem=problems.append)
        logger.info("nowhere")
        logger.info("nowhere either")
        stats = await logger.close()
        self.assertEqual((stats.sent, stats.rejected, stats.retries, stats.failed), (0, 2, 0, 0))
        self.assertEqual(stats.last_error.status, 404)
        self.assertIn(f"Subtask {UNKNOWN_ID} not found", stats.last_error.message)
        self.assertEqual(len(problems), 1)
        self.assertIn("refused 2 line(s) with 404", problems[0])


class WithoutAServer(unittest.IsolatedAsyncioTestCase):
    async def test_log_never_blocks_or_raises_the_buffer_is_bounded_and_close_gives_up_on_time(self):
        problems = []
        unreachable = f"http://127.0.0.1:{closed_port()}"
        logger = WorkerLogger(
            ANY_SUBTASK, unreachable, max_buffer=50, max_batch_size=10, backoff_base=0.05, on_problem=problems.append
        )
        for i in range(80):
            self.assertIsNone(logger.info(f"line {i}"))
        logger.log("loud", "not a level")
        logger.info("not JSON", {"nan": float("nan")})
        stats = logger.stats
        self.assertEqual((stats.dropped, stats.rejected), (30, 2))
        self.assertLessEqual(stats.pending, 50)
        stats = await logger.close(timeout=1.0)
        self.assertEqual(stats.sent, 0)
        self.assertEqual(stats.pending, 0)
        self.assertEqual(stats.failed, 50)  # every line neither dropped nor sent is accounted for
        self.assertIsNone(stats.last_error.status)
        logger.info("after close")  # ignored, reported, never raised
        self.assertTrue(any("dropping the oldest" in p for p in problems), problems)
        self.assertTrue(any("could not be encoded" in p for p in problems), problems)
        self.assertTrue(any("after close()" in p for p in problems), problems)

    async def test_a_flush_waiting_when_close_gives_up_returns_instead_of_raising(self):
        logger = WorkerLogger(ANY_SUBTASK, f"http://127.0.0.1:{closed_port()}", backoff_base=0.05, on_problem=lambda p: None)
        logger.info("never delivered")
        flushing = asyncio.ensure_future(logger.flush())
        stats = await logger.close(timeout=0.3)
        self.assertEqual(stats.failed, 1)
        self.assertEqual((await flushing).failed, 1)

    async def test_lines_logged_from_a_worker_thread_are_sent_by_the_loop(self):
        stub = Stub([(201, {}, stored)] * 5)
        self.addCleanup(stub.stop)
        logger = WorkerLogger(ANY_SUBTASK, stub.url, flush_interval=0.05)  # made in the loop: bound to it

        def blocking_work():
            for i in range(5):
                logger.info(f"from a thread {i}")

        await asyncio.get_running_loop().run_in_executor(None, blocking_work)
        sent = lambda: [line["message"] for r in stub.requests for line in r["body"]["logs"]]  # noqa: E731
        await eventually(lambda: _true(len(sent()) == 5), what="thread lines sent without flush()")
        self.assertEqual(sent(), [f"from a thread {i}" for i in range(5)])
        await logger.close()

    async def test_metadata_json_cannot_encode_is_sent_as_text(self):
        stub = Stub([(201, {}, stored)])
        self.addCleanup(stub.stop)
        logger = WorkerLogger(ANY_SUBTASK, stub.url)
        logger.info("when", {"at": time.struct_time((2026, 1, 2, 3, 4, 5, 0, 0, 0)), "path": os.sep})
        self.assertEqual((await logger.close()).sent, 1)
        line = stub.requests[0]["body"]["logs"][0]
        self.assertEqual(line["metadata"]["path"], os.sep)
        self.assertIsInstance(line["metadata"]["at"], list)  # a struct_time is a tuple: JSON encodes it as a list
        self.assertRegex(line["timestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class RetriesAgainstAStub(unittest.IsolatedAsyncioTestCase):
    def stub(self, answers):
        stub = Stub(answers)
        self.addCleanup(stub.stop)
        return stub

    async def test_retry_after_is_honoured_and_every_retry_reuses_the_batch_idempotency_key(self):
        stub = self.stub(
            [
                (429, {"Retry-After": "1"}, {"error": "rate_limited", "message": "Too many logs"}),
                (503, {"Retry-After": "1"}, {"error": "unavailable", "message": "Redis is down; nothing was stored"}),
                (201, {}, stored),
                (201, {}, stored),
            ]
        )
        logger = WorkerLogger(ANY_SUBTASK, stub.url, backoff_base=0.01, backoff_max=0.02)
        logger.info("first batch")
        stats = await logger.flush()
        self.assertEqual((stats.sent, stats.retries, stats.failed), (1, 2, 0))
        first, second, third = stub.requests
        # Backoff alone would have retried within 20 ms; the server asked for one second, twice.
        self.assertGreaterEqual(second["at"] - first["at"], 0.95)
        self.assertGreaterEqual(third["at"] - second["at"], 0.95)
        keys = {r["headers"]["Idempotency-Key"] for r in stub.requests}
        self.assertEqual(len(keys), 1)
        self.assertTrue(1 <= len(keys.pop()) <= 128)
        self.assertEqual(first["body"], third["body"])  # the same batch, timestamp included
        logger.info("second batch")
        await logger.close()
        self.assertNotEqual(stub.requests[3]["headers"]["Idempotency-Key"], first["headers"]["Idempotency-Key"])

    async def test_a_422_naming_one_line_drops_only_that_line(self):
        too_long = {"path": "/logs/1/message", "message": "too long"}
        refusal = {"error": "validation", "message": "Invalid log", "details": [too_long]}
        stub = self.stub([(422, {}, refusal), (201, {}, stored)])
        problems = []
        logger = WorkerLogger(ANY_SUBTASK, stub.url, on_problem=problems.append)
        for message in ("a", "b", "c"):
            logger.info(message)
        stats = await logger.close()
        self.assertEqual((stats.sent, stats.rejected, stats.retries), (2, 1, 0))
        self.assertEqual([line["message"] for line in stub.requests[1]["body"]["logs"]], ["a", "c"])
        # The second request is another body: it must not reuse the refused one's key.
        self.assertNotEqual(stub.requests[0]["headers"]["Idempotency-Key"], stub.requests[1]["headers"]["Idempotency-Key"])
        self.assertIn("refused 1 line(s) with 422 (Invalid log)", problems[0])

    async def test_the_token_comes_from_the_parameter_or_tasklog_token(self):
        stub = self.stub([(201, {}, stored), (201, {}, stored)])
        with mock.patch.dict(os.environ, {"TASKLOG_TOKEN": "from-env"}):
            from_env = WorkerLogger(ANY_SUBTASK, stub.url)
            explicit = WorkerLogger(ANY_SUBTASK, stub.url, token="given")
        from_env.info("x")
        await from_env.close()
        explicit.info("y")
        await explicit.close()
        self.assertEqual([r["headers"]["Authorization"] for r in stub.requests], ["Bearer from-env", "Bearer given"])

    async def test_gives_up_after_max_attempts_and_says_why(self):
        stub = self.stub([(500, {}, {"error": "internal", "message": "boom"})] * 3)
        problems = []
        logger = WorkerLogger(ANY_SUBTASK, stub.url, max_attempts=3, backoff_base=0.01, on_problem=problems.append)
        logger.error("lost")
        stats = await logger.close()
        self.assertEqual((stats.sent, stats.failed, stats.retries, len(stub.requests)), (0, 1, 2, 3))
        self.assertEqual(problems, ["gave up on 1 line(s): boom"])


async def _true(value):
    return value


async def _eq(awaitable, expected):
    return await awaitable == expected
