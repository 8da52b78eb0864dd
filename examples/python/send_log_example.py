#!/usr/bin/env python3
"""Send log lines to tasklog as a worker would (Python port of send-log.ts).

Usage:
    python send_log_example.py simulate <subtask_id> [base_url] [--delay-ms <n>]
    python send_log_example.py send <subtask_id> <level> <message> [base_url] [--metadata '{"key": "value"}']

base_url defaults to http://localhost:8000. `simulate` sends the seven lines of a typical
task run with pauses between them (--delay-ms replaces every pause) and prints how many
watchers each line reached. Network errors, 5xx and 429 are retried (honouring Retry-After);
other errors are final. Exits with 1 on bad input or when a line is not stored.

Requires: pip install httpx   (Debian: apt install python3-httpx)
"""

import asyncio
import json
import random
import re
import sys
from datetime import datetime, timezone

import httpx

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", re.I)
HTTP_URL = re.compile(r"^https?://[^/\s]+", re.I)
LEVELS = ("debug", "info", "warning", "error")
MAX_ATTEMPTS = 3

# The same run as SIMULATED_STEPS in send-log.ts: (level, message, metadata, pause in seconds).
SIMULATED_STEPS = [
    ("info", "Task execution started", {"worker": "worker-1", "pid": 4242}, 0.5),
    ("debug", "Loading configuration", {"config_file": "config.yaml", "batch_size": 1000}, 0.5),
    ("info", "Processing batch 1/3", {"progress": 33, "records": 1000}, 1.0),
    ("info", "Processing batch 2/3", {"progress": 66, "records": 2000}, 1.0),
    ("warning", "High memory usage", {"memory_mb": 1843, "limit_mb": 2048}, 0.5),
    ("info", "Processing batch 3/3", {"progress": 100, "records": 3000}, 1.0),
    ("info", "Task completed successfully", {"records": 3000, "duration_s": 4.5}, 0.0),
]


class SendError(Exception):
    pass


def now_iso():
    """ISO 8601 UTC with milliseconds and Z, the server's timestamp format."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def send_log(client, base_url, subtask_id, level, message, metadata=None):
    """POSTs one line; returns the server's answer. The timestamp is set once, so a retry keeps it."""
    url = f"{base_url.rstrip('/')}/api/v1/subtasks/{subtask_id}/log"
    payload = {"level": level, "message": message, "metadata": metadata or {}, "timestamp": now_iso()}
    for attempt in range(1, MAX_ATTEMPTS + 1):
        delay = min(10.0, 0.25 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
        try:
            response = await client.post(url, json=payload, timeout=5.0)
        except httpx.TransportError as error:
            problem = f"cannot reach {base_url}: {error or type(error).__name__}"
        else:
            if response.status_code == 201:
                return response.json()
            try:
                problem = f"{response.json()['message']} (HTTP {response.status_code})"
            except (ValueError, KeyError, TypeError):
                problem = f"HTTP {response.status_code}"
            if response.status_code != 429 and response.status_code < 500:
                raise SendError(problem)  # the request itself is wrong: retrying cannot help
            retry_after = response.headers.get("retry-after", "")
            if retry_after.isdigit():
                delay = float(retry_after)
        if attempt < MAX_ATTEMPTS:
            await asyncio.sleep(delay)
    raise SendError(f"{problem}; gave up after {MAX_ATTEMPTS} attempts")


async def simulate(base_url, subtask_id, delay_ms=None):
    print(f"Simulating task execution for subtask {subtask_id}")
    async with httpx.AsyncClient() as client:
        for i, (level, message, metadata, pause) in enumerate(SIMULATED_STEPS, start=1):
            result = await send_log(client, base_url, subtask_id, level, message, metadata)
            print(f"[{i}/{len(SIMULATED_STEPS)}] ✓ {level}: {message} (broadcasted to {result['broadcasted']} clients)")
            if i < len(SIMULATED_STEPS):
                await asyncio.sleep(pause if delay_ms is None else delay_ms / 1000)
    print("Simulation complete")


async def send_one(base_url, subtask_id, level, message, metadata):
    async with httpx.AsyncClient() as client:
        result = await send_log(client, base_url, subtask_id, level, message, metadata)
    print(f"✓ Log sent (id {result['id']}): broadcasted to {result['broadcasted']} clients")


def usage_error(message):
    print(f"Error: {message}\n\n{__doc__.strip().split(chr(10) * 2)[1]}", file=sys.stderr)
    return 1


def main(argv):
    positional, options = [], {}
    args = iter(argv)
    for arg in args:
        if arg.startswith("--"):
            value = next(args, None)
            if value is None:
                return usage_error(f"{arg} needs a value")
            options[arg] = value
        else:
            positional.append(arg)
    command, rest = (positional[0], positional[1:]) if positional else (None, [])
    if command not in ("simulate", "send"):
        return usage_error(f"Unknown command {command}" if command else "Missing command")
    allowed = {"simulate": {"--delay-ms"}, "send": {"--metadata"}}[command]
    for name in options:
        if name not in allowed:
            return usage_error(f"Unknown option {name}")
    if not rest:
        return usage_error("Missing subtask_id")
    subtask_id = rest[0]
    if not UUID.match(subtask_id):
        return usage_error(f"Invalid subtask ID: {subtask_id} (expected a UUID)")

    try:
        if command == "simulate":
            if len(rest) > 2:
                return usage_error(f"Unexpected argument {rest[2]}")
            delay = options.get("--delay-ms")
            if delay is not None and not delay.isdigit():
                return usage_error(f"Invalid --delay-ms: {delay}")
            base_url = rest[1] if len(rest) > 1 else "http://localhost:8000"
            if not HTTP_URL.match(base_url):
                return usage_error(f"Invalid base URL: {base_url}")
            asyncio.run(simulate(base_url, subtask_id, None if delay is None else int(delay)))
        else:
            if len(rest) < 3:
                return usage_error("send needs <subtask_id> <level> <message>")
            if len(rest) > 4:
                return usage_error(f"Unexpected argument {rest[4]}")
            level, message = rest[1], rest[2]
            if level not in LEVELS:
                return usage_error(f"Invalid level: {level}. Must be one of: {', '.join(LEVELS)}")
            metadata = None
            if "--metadata" in options:
                try:
                    metadata = json.loads(options["--metadata"])
                except ValueError:
                    pass
                if not isinstance(metadata, dict):
                    return usage_error(f"Invalid --metadata: {options['--metadata']} (expected a JSON object)")
            base_url = rest[3] if len(rest) > 3 else "http://localhost:8000"
            if not HTTP_URL.match(base_url):
                return usage_error(f"Invalid base URL: {base_url}")
            asyncio.run(send_one(base_url, subtask_id, level, message, metadata))
    except SendError as error:
        print(f"✗ Failed to send log: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    sys.exit(main(sys.argv[1:]))
