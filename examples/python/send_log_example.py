#!/usr/bin/env python3
"""Send log lines to tasklog as a worker would (Python port of send-log.ts).

Usage:
    python send_log_example.py simulate <subtask_id> [base_url] [--delay-ms <n>]
    python send_log_example.py send <subtask_id> <level> <message> [base_url] [--metadata '{"key": "value"}']

base_url defaults to http://localhost:8000. `simulate` sends the seven lines of a typical
task run with pauses between them (--delay-ms replaces every pause) and prints how many
watchers each line reached. Lines go through the tasklog_client package's WorkerLogger: network
errors, 5xx and 429 are retried (honouring Retry-After); other errors are final. Exits with 1 on
bad input or when a line is not stored. TASKLOG_TOKEN, when set, is sent as a bearer token.

Requires: pip install ./clients/python   (or run it from the repository: it finds the package)
"""

import asyncio
import json
import re
import sys
from pathlib import Path

try:
    import tasklog_client  # noqa: F401
except ImportError:  # run from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python"))
from tasklog_client import LEVELS, WorkerLogger

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", re.I)
HTTP_URL = re.compile(r"^https?://[^/\s]+", re.I)
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


def new_logger(base_url, subtask_id):
    # Problems are reported by send_now's exception, not as warnings.
    return WorkerLogger(subtask_id, base_url, max_attempts=MAX_ATTEMPTS, on_problem=lambda problem: None)


async def send_now(logger, level, message, metadata=None):
    """Sends one line now; returns the logger's stats once it is stored, raises SendError if it is not."""
    before = logger.stats.sent
    logger.log(level, message, metadata)
    stats = await logger.flush()
    if stats.sent > before:
        return stats
    error = stats.last_error
    problem = error.message if error else "unknown error"
    raise SendError(f"{problem} (HTTP {error.status})" if error and error.status else problem)


async def simulate(base_url, subtask_id, delay_ms=None):
    print(f"Simulating task execution for subtask {subtask_id}")
    logger = new_logger(base_url, subtask_id)
    try:
        for i, (level, message, metadata, pause) in enumerate(SIMULATED_STEPS, start=1):
            stats = await send_now(logger, level, message, metadata)
            print(f"[{i}/{len(SIMULATED_STEPS)}] ✓ {level}: {message} (broadcasted to {stats.broadcasted} clients)")
            if i < len(SIMULATED_STEPS):
                await asyncio.sleep(pause if delay_ms is None else delay_ms / 1000)
    finally:
        await logger.close()
    print("Simulation complete")


async def send_one(base_url, subtask_id, level, message, metadata):
    logger = new_logger(base_url, subtask_id)
    try:
        stats = await send_now(logger, level, message, metadata)
    finally:
        await logger.close()
    print(f"✓ Log sent (id {stats.last_id}): broadcasted to {stats.broadcasted} clients")


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
