"""TasklogApi: the REST calls a worker or an orchestrator needs besides logging."""

from typing import Any, Dict, List, Optional

import httpx

from ._common import api_error, auth_headers, base_url_for, resolve_token

_SUBTASK_FIELDS = ("status", "worker_id", "worker_name")


class TasklogApi:
    """Create, list and read tasks, update a subtask, read a task's history, send one line.

    Answers are the server's JSON as dicts; any non-2xx answer raises TasklogApiError (with
    `status`, `code`, `message`, `details`); network errors raise httpx's errors. Nothing is
    retried here: a worker's lines should go through WorkerLogger, which retries.

        async with TasklogApi("http://localhost:8000") as api:
            task = await api.create_task("Nightly import", subtasks=["Download", "Load"])
    """

    def __init__(self, base_url: str = "http://localhost:8000", *, token: Optional[str] = None, timeout: float = 10.0):
        self.base_url = base_url_for(base_url, "http")
        self._client = httpx.AsyncClient(
            base_url=f"{self.base_url}/api/v1", headers=auth_headers(resolve_token(token)), timeout=timeout
        )

    async def create_task(self, description: str, subtasks: Optional[List[str]] = None) -> Dict[str, Any]:
        """`POST /tasks`: without `subtasks` the server splits the description into steps."""
        body: Dict[str, Any] = {"description": description}
        if subtasks is not None:
            body["subtasks"] = [{"description": text} for text in subtasks]
        return await self._request("POST", "/tasks", body)

    async def list_tasks(
        self, *, status: Optional[str] = None, limit: Optional[int] = None, cursor: Optional[str] = None
    ) -> Dict[str, Any]:
        """`GET /tasks`: `{tasks, next_cursor}`, newest first; pass `next_cursor` as `cursor` for the next page."""
        return await self._request("GET", "/tasks", params=_given(status=status, limit=limit, cursor=cursor))

    async def get_task(self, task_id: str) -> Dict[str, Any]:
        return await self._request("GET", f"/tasks/{task_id}")

    async def get_subtask(self, subtask_id: str) -> Dict[str, Any]:
        return await self._request("GET", f"/subtasks/{subtask_id}")

    async def update_subtask(self, subtask_id: str, **fields: Any) -> Dict[str, Any]:
        """`PATCH /subtasks/{id}` with any of `status`, `worker_id`, `worker_name` (None clears a worker field)."""
        unknown = set(fields) - set(_SUBTASK_FIELDS)
        if unknown:
            raise TypeError(f"unknown subtask field(s) {', '.join(sorted(unknown))}: expected {', '.join(_SUBTASK_FIELDS)}")
        return await self._request("PATCH", f"/subtasks/{subtask_id}", fields)

    async def get_logs(
        self,
        task_id: str,
        *,
        limit: Optional[int] = None,
        order: Optional[str] = None,
        since: Optional[str] = None,
        level: Optional[str] = None,
        subtask_id: Optional[str] = None,
    ) -> Dict[str, Any]:
        """`GET /tasks/{id}/logs`: the newest `limit` logs, newest first; with `since`, the logs
        after that id, oldest first (pass the answer's `next_since` next time)."""
        params = _given(limit=limit, order=order, since=since, level=level, subtask_id=subtask_id)
        return await self._request("GET", f"/tasks/{task_id}/logs", params=params)

    async def send_log(
        self,
        subtask_id: str,
        level: str,
        message: str,
        metadata: Optional[Dict[str, Any]] = None,
        timestamp: Optional[str] = None,
    ) -> Dict[str, Any]:
        """`POST /subtasks/{id}/log`: one line, once (no batching, no retry)."""
        body: Dict[str, Any] = {"level": level, "message": message, "metadata": metadata}
        if timestamp is not None:
            body["timestamp"] = timestamp
        return await self._request("POST", f"/subtasks/{subtask_id}/log", body)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> "TasklogApi":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    async def _request(
        self, method: str, path: str, body: Optional[Dict[str, Any]] = None, params: Optional[Dict[str, Any]] = None
    ) -> Dict[str, Any]:
        response = await self._client.request(method, path, json=body, params=params)
        if not 200 <= response.status_code < 300:
            raise api_error(response.status_code, response.text)
        return response.json()


def _given(**query: Any) -> Dict[str, Any]:
    """The query parameters that were given (not None)."""
    return {key: value for key, value in query.items() if value is not None}
