"""Where alerts go: an append-only JSON-lines log, and optionally a webhook (Slack, PagerDuty, a bridge).

The log is the record: every alert is appended to it, and so is every failed webhook delivery, so
an operator can see both what happened and that nobody was told. A webhook that is down never makes
the caller (a sensor) fail.
"""

import datetime as dt
import json
import os
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import dagster as dg

from resources.filesystems import filesystem_and_path, is_remote, join_uri, read_bytes, write_bytes

WEBHOOK_TIMEOUT_S = 5.0


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


def _append_json_line(log_path: str, record: dict[str, Any]) -> None:
    """Append one JSON line to the log, so that concurrent writers never interleave or lose a line.

    A local log takes a single O_APPEND write. An object store cannot append (and a read-modify-write
    would lose the lines of a concurrent writer), so there the log is a prefix `<log_path>.d/` holding
    one object per line, named by time so that a listing reads in order.
    """
    line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
    if is_remote(log_path):
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H%M%S.%fZ")
        write_bytes(join_uri(f"{log_path}.d", f"{stamp}-{uuid.uuid4().hex[:12]}.json"), line)
        return
    path = Path(log_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(descriptor, line)
        while written < len(line):  # only on a full disk or a signal; the tail still lands in order
            written += os.write(descriptor, line[written:])
    finally:
        os.close(descriptor)


def read_alert_log(log_path: str) -> list[dict[str, Any]]:
    """Every record of the log in order, from a local file or an object-store prefix."""
    if not is_remote(log_path):
        path = Path(log_path)
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    import pyarrow.fs as pafs

    fs, prefix = filesystem_and_path(f"{log_path}.d")
    infos = fs.get_file_info(pafs.FileSelector(prefix, allow_not_found=True))
    names = sorted(info.path for info in infos if info.type == pafs.FileType.File)
    scheme = log_path.split("://", 1)[0]
    return [json.loads(read_bytes(f"{scheme}://{name}")) for name in names]


def _redacted(url: str) -> str:
    """Scheme and host only: webhook paths and queries often carry the secret token."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


class AlertSinkResource(dg.ConfigurableResource):
    """Appends alerts to `log_path` (a local JSON-lines file or an `s3://` log) and POSTs them as JSON
    to `webhook_url` when set."""

    log_path: str
    webhook_url: str | None = None

    def send(self, alert: dict[str, Any]) -> bool:
        """Record `alert`; return whether every configured channel took it (never raises for the webhook)."""
        _append_json_line(self.log_path, alert)
        if not self.webhook_url:
            return True
        body = json.dumps(alert, sort_keys=True, default=str).encode()
        request = urllib.request.Request(
            self.webhook_url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:
                response.read()
        except (urllib.error.URLError, OSError, ValueError) as error:
            # HTTPError is a URLError; timeouts and refused connections are OSErrors; a malformed URL
            # is a ValueError. All of them mean the same thing to the operator: this alert was not sent.
            _append_json_line(
                self.log_path,
                {
                    "at": _now_iso(),
                    "delivery_failure": "webhook",
                    "webhook": _redacted(self.webhook_url),
                    "error": f"{type(error).__name__}: {error}",
                    "alert_run_id": alert.get("run_id"),
                },
            )
            return False
        return True
