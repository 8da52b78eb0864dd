"""Python client for tasklog.

- WorkerLogger: a worker's log lines, batched and retried in the background; never blocks or
  raises into the task.
- LogStream: an async iterator over a task's live logs that resumes with `since` after a drop.
- TasklogApi: create and read tasks, update subtasks, read history.
"""

from ._common import LEVELS, TasklogApiError, canonical_uuid, log_id_key
from .api import TasklogApi
from .stream import LogStream, StreamClosed, StreamEvent
from .worker_logger import DeliveryError, LoggerStats, WorkerLogger

__all__ = [
    "LEVELS",
    "DeliveryError",
    "LogStream",
    "LoggerStats",
    "StreamClosed",
    "StreamEvent",
    "TasklogApi",
    "TasklogApiError",
    "WorkerLogger",
    "canonical_uuid",
    "log_id_key",
]

__version__ = "0.1.0"
