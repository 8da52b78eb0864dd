"""What the suites share: the server under test (TASKLOG_URL), its control hooks
(TASKLOG_TEST_CONTROL, given by tests/python-client.test.ts) and a scripted HTTP stub."""

import asyncio
import json
import os
import socket
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple

import httpx

URL = os.environ.get("TASKLOG_URL", "").rstrip("/")
WS_URL = URL.replace("http", "ws", 1)
CONTROL = os.environ.get("TASKLOG_TEST_CONTROL", "").rstrip("/")

needs_server = unittest.skipUnless(URL, "set TASKLOG_URL to a running tasklog server")
needs_control = unittest.skipUnless(URL and CONTROL, "set TASKLOG_TEST_CONTROL (tests/python-client.test.ts does)")

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
ANY_SUBTASK = "550e8400-e29b-41d4-a716-446655440001"


async def create_task(subtasks: int = 1) -> Dict[str, Any]:
    body = {"description": "python client test", "subtasks": [{"description": f"step {i}"} for i in range(subtasks)]}
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{URL}/api/v1/tasks", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def post_logs(subtask_id: str, lines: List[Tuple[str, str]]) -> Dict[str, Any]:
    """Stores (level, message) lines in one batch, outside the client under test."""
    body = {"logs": [{"level": level, "message": message} for level, message in lines]}
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{URL}/api/v1/subtasks/{subtask_id}/logs", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def history(task_id: str) -> List[Dict[str, Any]]:
    """The task's stored logs, oldest first."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{URL}/api/v1/tasks/{task_id}/logs", params={"order": "asc", "limit": 1000})
    assert response.status_code == 200, response.text
    return response.json()["logs"]


async def control(action: str, **params: Any) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{CONTROL}{action}", params=params, timeout=10)
    assert response.status_code == 200, response.text


async def eventually(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> None:
    """Polls an async `check` until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not met within {timeout} s")
        await asyncio.sleep(0.05)


class Stub:
    """A real HTTP server on loopback answering each request with the next scripted
    (status, headers, body), and recording what it received: for the cases tasklog cannot be
    made to produce on demand (a 429 with Retry-After, a 422 naming one line of a batch, a
    refused WebSocket upgrade)."""

    def __init__(self, answers: List[Tuple[int, Dict[str, str], Any]]):
        self.answers = list(answers)
        self.requests: List[Dict[str, Any]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # WebSocket clients refuse a 1.0 answer to an upgrade

            def answer(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"null")
                stub.requests.append({"path": self.path, "headers": dict(self.headers), "body": body, "at": time.monotonic()})
                status, headers, answer = stub.answers.pop(0) if stub.answers else (500, {}, {"message": "no answer left"})
                if callable(answer):
                    answer = answer(body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def stored(body: Any) -> Dict[str, Any]:
    """The 201 answer tasklog gives a batch."""
    n = len(body["logs"])
    return {"success": True, "accepted": n, "broadcasted": 0, "first_id": "1-0", "last_id": f"1-{n - 1}"}


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

