"""Where alerts go: an append-only JSON-lines log, and optionally a webhook (Slack, PagerDuty, a bridge).

The log is the record: every alert is appended to it, and so is every failed webhook delivery, so
an operator can see both what happened and that nobody was told. A webhook that is down never makes
the caller (a sensor) fail; a webhook URL that cannot be used does, when the sink is set up.

The webhook URL (`FLEETML_ALERT_WEBHOOK`) usually carries a secret token in its path or query, so:
- it must be https (http only to a loopback address, which is what tests use): plain http would
  send the token in clear;
- redirects are refused, never followed: a 302 could send the alert, and the sensor's network
  position, to any internal URL;
- the whole delivery has one deadline: a server that drips its answer a byte at a time would
  otherwise hold the sensor tick indefinitely, since socket timeouts bound each read, not the total;
- at most `MAX_RESPONSE_BYTES` of the answer are read: nothing in it is needed;
- logged errors and configuration errors show the URL's scheme and host only.
"""

import contextlib
import datetime as dt
import http.client
import ipaddress
import json
import os
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from resources.filesystems import filesystem_and_path, is_remote, join_uri, read_bytes, write_bytes

WEBHOOK_VARIABLE = "FLEETML_ALERT_WEBHOOK"
WEBHOOK_DEADLINE_S = 5.0
MAX_RESPONSE_BYTES = 64 * 1024


class AlertWebhookConfigError(ValueError):
    """The webhook URL cannot be used; the message never holds the URL's path, query or credentials."""


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _append_json_line(log_path: str, record: dict[str, Any]) -> None:
    """Append one JSON line to the log, so that concurrent writers never interleave or lose a line.

    A local log takes a single O_APPEND write. An object store cannot append (and a read-modify-write
    would lose the lines of a concurrent writer), so there the log is a prefix `<log_path>.d/` holding
    one object per line, named by time so that a listing reads in order.
    """
    line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
    if is_remote(log_path):
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H%M%S.%fZ")
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
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return "<not a URL>"
    return f"{parts.scheme or '<no scheme>'}://{parts.hostname or '<no host>'}" + (f":{port}" if port else "")


def _without_secrets(message: str, url: str) -> str:
    """`message` with the URL and its secret-bearing parts replaced, whatever library wrote it."""
    parts = urllib.parse.urlsplit(url)
    for secret in (url, parts.path, parts.query, parts.fragment, parts.username, parts.password):
        if secret and secret != "/":
            message = message.replace(secret, "<redacted>")
    return message


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def checked_webhook_url(url: str) -> str:
    """`url` when alerts may be posted to it: https, or http to a loopback address; else a config error."""
    # http.client echoes a URL with control characters in its error, so they are refused here first.
    if any(character.isspace() or not character.isprintable() for character in url):
        raise AlertWebhookConfigError(
            f"{WEBHOOK_VARIABLE} contains whitespace or control characters ({_redacted(url)})"
        )
    redacted = _redacted(url)
    if redacted == "<not a URL>":
        raise AlertWebhookConfigError(f"{WEBHOOK_VARIABLE} is not a URL")
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname
    if host and (parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(host))):
        return url
    raise AlertWebhookConfigError(
        f"{WEBHOOK_VARIABLE} must be an https:// URL (http:// only to a loopback address), not {redacted}"
    )


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is a failed delivery: following it would post the alert wherever the answer says."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        raise urllib.error.HTTPError(req.full_url, code, f"redirect not followed ({msg})", headers, fp)


class _Deadline:
    """The sockets one delivery opened, shut when its deadline passes so that its worker stops too."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._passed = False

    def connected(self, sock: socket.socket) -> None:
        with self._lock:
            if not self._passed:
                self._sockets.append(sock)
                return
        sock.close()
        raise TimeoutError("the delivery deadline passed while connecting")

    def expire(self) -> None:
        with self._lock:
            self._passed = True
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):  # already closed by the worker
                sock.shutdown(socket.SHUT_RDWR)


def _connection_class(base: type[http.client.HTTPConnection], deadline: _Deadline) -> type:
    """`base`, handing its socket to `deadline` once connected. For https that is after the TLS
    handshake, which only the per-operation timeout bounds: the caller is back at the deadline anyway."""

    class DeadlineConnection(base):  # type: ignore[valid-type, misc]
        def connect(self) -> None:
            super().connect()
            deadline.connected(self.sock)

    return DeadlineConnection


class _DeadlineHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._connection = _connection_class(http.client.HTTPConnection, deadline)

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._connection, req)


class _DeadlineHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._connection = _connection_class(http.client.HTTPSConnection, deadline)

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._connection, req, context=self._context, check_hostname=self._check_hostname)


def post_alert(url: str, body: bytes, deadline_s: float) -> str | None:
    """POST `body` to `url`; None when it answered 2xx within `deadline_s` seconds, else why not.

    The request runs on a worker thread so that the caller is back at the deadline whatever the
    server does; the deadline then shuts the worker's socket, so the worker ends too.
    """
    deadline = _Deadline()
    opener = urllib.request.build_opener(
        _RefuseRedirects, _DeadlineHTTPHandler(deadline), _DeadlineHTTPSHandler(deadline)
    )
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    outcome: list[str | None] = []

    def deliver() -> None:
        try:
            with opener.open(request, timeout=deadline_s) as response:
                response.read(MAX_RESPONSE_BYTES)
            outcome.append(None)
        except Exception as error:  # noqa: BLE001 - the thread's only way out; any failure is "not sent"
            outcome.append(f"{type(error).__name__}: {error}")

    worker = threading.Thread(target=deliver, name="alert-webhook", daemon=True)
    worker.start()
    worker.join(deadline_s)
    if worker.is_alive():
        deadline.expire()
        return f"TimeoutError: no complete answer within {deadline_s:g} s"
    return outcome[0]


class AlertSinkResource(dg.ConfigurableResource):
    """Appends alerts to `log_path` (a local JSON-lines file or an `s3://` log) and POSTs them as JSON
    to `webhook_url` when set."""

    log_path: str = Field(description="The alert log: a local JSON-lines file or an `s3://` URI.")
    webhook_url: str | None = Field(
        default=None,
        description=f"`{WEBHOOK_VARIABLE}`: https URL to POST each alert to (http only to loopback).",
    )
    webhook_deadline_s: float = Field(
        default=WEBHOOK_DEADLINE_S, description="Longest a webhook delivery may take, all of it.", gt=0
    )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """An unusable webhook URL fails the run or tick that sets the sink up, naming the variable."""
        if self.webhook_url:
            checked_webhook_url(self.webhook_url)

    def send(self, alert: dict[str, Any]) -> bool:
        """Record `alert`; return whether every configured channel took it.

        Never raises for a webhook failure (it is logged); raises `AlertWebhookConfigError` for a
        webhook URL that cannot be used, before writing anything.
        """
        url = checked_webhook_url(self.webhook_url) if self.webhook_url else None
        _append_json_line(self.log_path, alert)
        if url is None:
            return True
        error = post_alert(
            url, json.dumps(alert, sort_keys=True, default=str).encode(), self.webhook_deadline_s
        )
        if error is None:
            return True
        _append_json_line(
            self.log_path,
            {
                "at": _now_iso(),
                "delivery_failure": "webhook",
                "webhook": _redacted(url),
                "error": _without_secrets(error, url),
                "alert_run_id": alert.get("run_id"),
            },
        )
        return False
