import os
import unittest
from unittest import mock

from support import UNKNOWN_ID, URL, Stub, create_task, needs_server, post_logs
from tasklog_client import TasklogApi, TasklogApiError


@needs_server
class RestHelper(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        self.api = TasklogApi(URL)

    async def asyncTearDown(self) -> None:
        await self.api.aclose()

    async def test_create_read_update_a_task_and_its_subtasks(self):
        task = await self.api.create_task("Nightly import", subtasks=["Download", "Load"])
        self.assertEqual([s["description"] for s in task["subtasks"]], ["Download", "Load"])
        self.assertEqual(task["status"], "pending")
        first = task["subtasks"][0]["subtask_id"]
        updated = await self.api.update_subtask(first, status="in_progress", worker_id="w-1", worker_name="builder-7")
        self.assertEqual((updated["status"], updated["worker_id"], updated["worker_name"]), ("in_progress", "w-1", "builder-7"))
        self.assertEqual((await self.api.get_subtask(first))["worker_name"], "builder-7")
        self.assertEqual((await self.api.get_task(task["task_id"]))["status"], "in_progress")
        cleared = await self.api.update_subtask(first, worker_name=None)
        self.assertIsNone(cleared["worker_name"])
        decomposed = await self.api.create_task("1. Fetch\n2. Build\n3. Ship")
        self.assertEqual(len(decomposed["subtasks"]), 3)
        page = await self.api.list_tasks(limit=1)
        self.assertEqual([t["task_id"] for t in page["tasks"]], [decomposed["task_id"]])  # newest first
        following = await self.api.list_tasks(limit=1, cursor=page["next_cursor"])
        self.assertEqual([t["task_id"] for t in following["tasks"]], [task["task_id"]])
        busy = await self.api.list_tasks(status="in_progress", limit=100)
        self.assertIn(task["task_id"], [t["task_id"] for t in busy["tasks"]])
        self.assertNotIn(decomposed["task_id"], [t["task_id"] for t in busy["tasks"]])

    async def test_history_newest_first_since_and_level(self):
        task = await create_task()
        subtask = task["subtasks"][0]["subtask_id"]
        sent = await self.api.send_log(subtask, "info", "one", {"step": 1})
        self.assertTrue(sent["success"])
        await post_logs(subtask, [("debug", "two"), ("error", "three")])
        newest = await self.api.get_logs(task["task_id"], limit=2)
        self.assertEqual([log["message"] for log in newest["logs"]], ["three", "two"])
        after = await self.api.get_logs(task["task_id"], since=sent["id"])
        self.assertEqual([log["message"] for log in after["logs"]], ["two", "three"])
        self.assertEqual(after["next_since"], after["logs"][-1]["id"])
        errors = await self.api.get_logs(task["task_id"], level="warning")
        self.assertEqual([log["message"] for log in errors["logs"]], ["three"])
        everything = await self.api.get_logs(task["task_id"], since="0-0")
        self.assertEqual([log["message"] for log in everything["logs"]], ["one", "two", "three"])

    async def test_errors_carry_the_status_code_and_sentence(self):
        with self.assertRaises(TasklogApiError) as raised:
            await self.api.get_task(UNKNOWN_ID)
        self.assertEqual((raised.exception.status, raised.exception.code), (404, "not_found"))
        self.assertIn(UNKNOWN_ID, raised.exception.message)
        with self.assertRaises(TasklogApiError) as raised:
            await self.api.create_task("")
        self.assertEqual((raised.exception.status, raised.exception.code), (422, "validation"))
        self.assertTrue(raised.exception.details)
        with self.assertRaises(TypeError):
            await self.api.update_subtask(UNKNOWN_ID, state="done")


class Token(unittest.IsolatedAsyncioTestCase):
    async def test_sent_as_a_bearer_token_from_the_parameter_or_tasklog_token(self):
        stub = Stub([(201, {}, {"task_id": "t"}), (201, {}, {"task_id": "u"})])
        self.addCleanup(stub.stop)
        with mock.patch.dict(os.environ, {"TASKLOG_TOKEN": "from-env"}):
            async with TasklogApi(stub.url) as api:
                await api.create_task("a")
        async with TasklogApi(stub.url, token="given") as api:
            await api.create_task("b")
        self.assertEqual([r["headers"]["Authorization"] for r in stub.requests], ["Bearer from-env", "Bearer given"])
        self.assertEqual(stub.requests[0]["path"], "/api/v1/tasks")
