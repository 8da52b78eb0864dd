#!/usr/bin/env python3
"""Follow a tasklog task's logs in real time over WebSocket (Python port of websocket-client.ts).

Usage:
    python websocket_client.py <task_id> [base_url]

base_url defaults to ws://localhost:8000. Colored output by level (off with NO_COLOR or when
not a terminal); reconnects with exponential backoff and resumes after the last log seen
(since=<id>), dropping any log it already printed; sends {"action":"ping"} heartbeats.
Ctrl+C exits with 0; an unknown task (close code 1008) exits with 1.

Requires: pip install websockets   (Debian: apt install python3-websockets)
"""

import asyncio
import json
import os
import random
import re
import signal
import sys

import websockets

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", re.I)
HEARTBEAT_SECONDS = 15
USE_COLOR = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
LEVEL_SGR = {"debug": "36", "info": "32", "warning": "33", "error": "1;31"}


def paint(sgr, text):
    return f"\x1b[{sgr}m{text}\x1b[0m" if USE_COLOR else text


def log_id_key(log_id):
    """Log ids are `<ms>-<seq>`: compare them as numbers, not strings."""
    ms, seq = log_id.split("-")
    return int(ms), int(seq)


def format_log(log):
    time = log["timestamp"][11:23]
    level = log["level"]
    lines = [f"{paint('2', f'[{time}]')} {paint(LEVEL_SGR.get(level, '0'), level.upper().ljust(7))} {log['message']}"]
    for key, value in (log.get("metadata") or {}).items():
        lines.append(f"    {paint('2', key + ':')} {json.dumps(value, separators=(',', ':'), ensure_ascii=False)}")
    return "\n".join(lines)


class TaskNotFound(Exception):
    pass


class LogFollower:
    """One task's stream: remembers the last log id so a reconnection resumes without gaps or duplicates."""

    def __init__(self, task_id, base_url):
        self.task_id = task_id
        self.base_url = base_url.rstrip("/")
        self.last_id = None

    def url(self):
        url = f"{self.base_url}/api/v1/ws/tasks/{self.task_id}/logs"
        return f"{url}?since={self.last_id}" if self.last_id else url

    async def run(self):
        attempt = 0
        while True:
            try:
                async with websockets.connect(self.url(), open_timeout=10) as ws:
                    print(paint("2", f"Connected to {self.url()}"))
                    heartbeat = asyncio.create_task(self.heartbeat(ws))
                    try:
                        async for raw in ws:
                            if self.handle(json.loads(raw)):
                                attempt = 0
                    except websockets.ConnectionClosed:
                        pass
                    finally:
                        heartbeat.cancel()
                    if ws.close_code == 1008:
                        raise TaskNotFound(ws.close_reason or f"Task {self.task_id} not found")
                    print(paint("33", f"Connection lost (code {ws.close_code})"))
            except (OSError, asyncio.TimeoutError, websockets.InvalidHandshake) as error:
                print(paint("33", f"Cannot connect: {error}"))
            attempt += 1
            delay = min(15.0, 0.5 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
            print(paint("33", f"Reconnecting in {delay:.1f} s (attempt {attempt})..."))
            await asyncio.sleep(delay)

    def handle(self, frame):
        """Prints one frame; returns True when the subscription is confirmed."""
        kind, data = frame.get("type"), frame.get("data") or {}
        if kind == "subscribed":
            print(paint("32", f"✓ Subscribed to task {data.get('task_id')}"))
            if data.get("recovered") is False:
                print(paint("33", f"⚠ Some logs after {self.last_id} expired before they could be replayed"))
            return True
        if kind == "log":
            if self.last_id and log_id_key(data["id"]) <= log_id_key(self.last_id):
                return False  # already printed before the reconnection
            self.last_id = data["id"]
            print(format_log(data))
        elif kind == "status":
            worker = f" by {data['worker_name']}" if data.get("worker_name") else ""
            print(paint("35", f"● subtask {data['subtask_id']} is {data['status']}{worker} (task {data['task_status']})"))
        elif kind == "error":
            print(paint("31", f"✗ {data.get('message')}"), file=sys.stderr)
        return False

    async def heartbeat(self, ws):
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            await ws.send(json.dumps({"action": "ping"}))


def main(argv):
    usage = __doc__.strip().split("\n\n")[1]
    if not argv or argv[0] in ("-h", "--help") or len(argv) > 2:
        print(usage, file=sys.stderr)
        return 1
    task_id = argv[0]
    base_url = argv[1] if len(argv) > 1 else "ws://localhost:8000"
    if not UUID.match(task_id):
        print(f"Error: Invalid task ID: {task_id} (expected a UUID)\n\n{usage}", file=sys.stderr)
        return 1
    print(f"Connecting to {base_url} for task {task_id} (Ctrl+C to stop)")
    # Ctrl+C and SIGTERM end the client cleanly, even when started with SIGINT ignored (as `cmd &` does).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.default_int_handler)
    try:
        asyncio.run(LogFollower(task_id, base_url).run())
    except TaskNotFound as error:
        print(paint("31", f"✗ {error} (close code 1008). Check the task id, or create the task first (POST /api/v1/tasks)."), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Disconnected.")
    return 0


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    sys.exit(main(sys.argv[1:]))
