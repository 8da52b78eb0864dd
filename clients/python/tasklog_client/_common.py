"""What every part of the client shares: URLs, the token, ids, retry timing and the API's error shape."""

import json
import os
import random
import re
import uuid
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit, urlunsplit

#: Log levels in ascending order of severity: a level filter means "this level and above".
LEVELS = ("debug", "info", "warning", "error")


def base_url_for(base: str, scheme: str) -> str:
    """`base` with its scheme switched to http(s) or ws(s), keeping TLS, without query or trailing slash."""
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.netloc:
        raise ValueError(f"Invalid base URL {base!r}: expected http(s):// or ws(s)://<host>")
    secure = parts.scheme in ("https", "wss")
    return urlunsplit((scheme + ("s" if secure else ""), parts.netloc, parts.path.rstrip("/"), "", ""))


def resolve_token(token: Optional[str]) -> Optional[str]:
    """The token given, else the TASKLOG_TOKEN environment variable, else None."""
    return token if token is not None else (os.environ.get("TASKLOG_TOKEN") or None)


def auth_headers(token: Optional[str]) -> Dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def canonical_uuid(value: str) -> Optional[str]:
    """The id as the server stores and sends it (lowercase, hyphenated), or None if it is not a UUID.

    Accepts the forms the server accepts: any case, 32 hex digits, `{...}`, `urn:uuid:...`.
    """
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


def log_id_key(log_id: str) -> Tuple[int, int]:
    """Log ids are `<ms>-<seq>`: compare them as numbers, not as strings."""
    ms, _, seq = str(log_id).partition("-")
    return int(ms), int(seq or 0)


def now_iso() -> str:
    """The current time as the server writes timestamps: ISO 8601 UTC, milliseconds, `Z`."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso_ms(text: str) -> Optional[int]:
    """An ISO 8601 timestamp (the server's form) as Unix milliseconds, or None."""
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp()) * 1000 + moment.microsecond // 1000


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter, in seconds: `base * 2**attempt`, capped, times a random
    factor in [0.5, 1) so that clients retrying after one outage do not arrive in lock-step.
    `attempt` counts from 0."""
    ceiling = min(cap, base * 2 ** min(attempt, 30))
    return ceiling * (0.5 + random.random() / 2)


def retry_after_seconds(header: Optional[str]) -> Optional[float]:
    """A `Retry-After` header (seconds or an HTTP date) in seconds, or None when absent or unreadable."""
    if header is None or not header.strip():
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, (moment - datetime.now(timezone.utc)).total_seconds())


class TasklogApiError(Exception):
    """A non-2xx answer: the HTTP status, the server's error code, its sentence, and `details`
    (a list of `{path, message}`, e.g. the fields a 422 rejects)."""

    def __init__(self, status: int, code: str, message: str, details: Optional[List[Dict[str, Any]]] = None):
        super().__init__(f"{message} (HTTP {status})")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []


def api_error(status: int, text: str) -> TasklogApiError:
    """Reads an error answer as `{error, message, details?}`, tolerating proxies that answer HTML."""
    try:
        body = json.loads(text)
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            return TasklogApiError(status, str(body.get("error", "http_error")), body["message"], body.get("details"))
    except ValueError:
        pass
    return TasklogApiError(status, "http_error", f"HTTP {status}" + (f": {text[:200]}" if text else ""))
