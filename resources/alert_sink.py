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
from pathlib import Path
from typing import Any

import dagster as dg

WEBHOOK_TIMEOUT_S = 5.0


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


def _append_json_line(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line with a single O_APPEND write, so concurrent writers never interleave."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(descriptor, line)
        while written < len(line):  # only on a full disk or a signal; the tail still lands in order
            written += os.write(descriptor, line[written:])
    finally:
        os.close(descriptor)


def _redacted(url: str) -> str:
    """Scheme and host only: webhook paths and queries often carry the secret token."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


class AlertSinkResource(dg.ConfigurableResource):
    """Appends alerts to `log_path` as JSON lines and POSTs them as JSON to `webhook_url` when set."""

    log_path: str
    webhook_url: str | None = None

    def send(self, alert: dict[str, Any]) -> bool:
        """Record `alert`; return whether every configured channel took it (never raises for the webhook)."""
        _append_json_line(Path(self.log_path), alert)
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
                Path(self.log_path),
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
