#!/usr/bin/env python3
"""Follow a tasklog task's logs in real time over WebSocket (Python port of websocket-client.ts).

Usage:
    python websocket_client.py <task_id> [base_url]

base_url defaults to ws://localhost:8000. Colored output by level (off with NO_COLOR or when
not a terminal). Built on the tasklog_client package's LogStream: it reconnects with
exponential backoff and resumes after the last log seen (since=<id>), printing each log once,
and says so when some missed logs expired; WebSocket pings replace a dead connection.
TASKLOG_TOKEN, when set, is sent as the stream's token. Ctrl+C exits with 0; an unknown task
(close code 1008) exits with 1.

Requires: pip install ./clients/python   (or run it from the repository: it finds the package)
"""

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

try:
    import tasklog_client  # noqa: F401
except ImportError:  # run from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python"))
from tasklog_client import LogStream, StreamClosed

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", re.I)
USE_COLOR = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
LEVEL_SGR = {"debug": "36", "info": "32", "warning": "33", "error": "1;31"}


def paint(sgr, text):
    return f"\x1b[{sgr}m{text}\x1b[0m" if USE_COLOR else text


def format_log(log):
    time = log["timestamp"][11:23]
    level = log["level"]
    lines = [f"{paint('2', f'[{time}]')} {paint(LEVEL_SGR.get(level, '0'), level.upper().ljust(7))} {log['message']}"]
    for key, value in (log.get("metadata") or {}).items():
        lines.append(f"    {paint('2', key + ':')} {json.dumps(value, separators=(',', ':'), ensure_ascii=False)}")
    return "\n".join(lines)


def show(event):
    """Prints one event of the stream."""
    data = event.data
    if event.type == "open":
        print(paint("2", f"Connected to {data['url']}"))
    elif event.type == "subscribed":
        print(paint("32", f"✓ Subscribed to task {data.get('task_id')}"))
    elif event.type == "gap":
        print(paint("33", f"⚠ Some logs after {data['since']} expired before they could be replayed"))
    elif event.type == "log":
        print(format_log(data))
    elif event.type == "status":
        worker = f" by {data['worker_name']}" if data.get("worker_name") else ""
        print(paint("35", f"● subtask {data['subtask_id']} is {data['status']}{worker} (task {data['task_status']})"))
    elif event.type == "error":
        print(paint("31", f"✗ {data.get('message')}"), file=sys.stderr)
    elif event.type == "close":
        print(paint("33", f"Cannot connect: {data['error']}" if data["error"] else f"Connection lost (code {data['code']})"))
    elif event.type == "reconnecting":
        print(paint("33", f"Reconnecting in {data['delay']:.1f} s (attempt {data['attempt']})..."))


async def follow(task_id, base_url):
    async for event in LogStream(task_id, base_url):
        show(event)


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
        asyncio.run(follow(task_id, base_url))
    except StreamClosed as error:
        hint = " Check the task id, or create the task first (POST /api/v1/tasks)." if error.code == 1008 else ""
        print(paint("31", f"✗ {error}.{hint}"), file=sys.stderr)
        return 1
    except ValueError as error:  # a base URL that is not http(s):// or ws(s)://
        print(f"Error: {error}\n\n{usage}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Disconnected.")
    return 0


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    sys.exit(main(sys.argv[1:]))
