import json
import socket
import threading
import time
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest

from resources.alert_sink import (
    AlertSinkResource,
    AlertWebhookConfigError,
    checked_webhook_url,
)
from sensors.alerts import SENSOR_NAME, run_failure_alert_sensor


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """The webhook under test listens on 127.0.0.1: a proxy from the environment must not intercept it."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


class Webhook:
    """A local HTTP endpoint on 127.0.0.1 that records every request and answers with an empty `status`,
    or through `answer(handler)` when given (redirects, dripping or huge answers)."""

    def __init__(self, status: int = 204, answer: Callable[[BaseHTTPRequestHandler], None] | None = None):
        self.bodies: list[dict] = []
        self.content_types: list[str] = []
        self.requests: list[tuple[str, str]] = []  # (method, path), redirected ones included
        self.answered = threading.Event()  # set once an answer ends, however it ends
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                outer.requests.append((self.command, self.path))
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    outer.bodies.append(json.loads(self.rfile.read(length)))
                    outer.content_types.append(self.headers["Content-Type"])
                try:
                    if answer is None:
                        self.send_response(status)
                        self.end_headers()
                    else:
                        answer(self)
                finally:
                    outer.answered.set()

            do_GET = do_POST  # a followed 302 turns the POST into a GET

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/T0KEN-secret"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def log_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


@dg.op
def score_feedback():
    raise RuntimeError("feedback batch b-17 has no rows\nsecond line of detail")


@dg.job(
    tags={"fleetml/trigger": "edge_feedback_sensor", "fleetml/feedback_file": "edge_feedback/b-17.parquet"}
)
def feedback_scoring_job():
    score_feedback()


def failed_run_context(alert_sink: AlertSinkResource) -> dg.RunFailureSensorContext:
    instance = dg.DagsterInstance.ephemeral()
    result = feedback_scoring_job.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    return dg.build_run_status_sensor_context(
        sensor_name=SENSOR_NAME,
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"alert_sink": alert_sink},
    )


def test_the_alert_sensor_is_running_by_default_and_needs_the_alert_sink():
    assert run_failure_alert_sensor.name == SENSOR_NAME
    assert run_failure_alert_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert run_failure_alert_sensor.required_resource_keys == {"alert_sink"}


def test_a_failed_run_posts_its_alert_to_the_webhook_and_the_log(tmp_path):
    log_path = tmp_path / "alerts" / "nested" / "alerts.jsonl"
    with Webhook() as webhook:
        context = failed_run_context(AlertSinkResource(log_path=str(log_path), webhook_url=webhook.url))
        run_failure_alert_sensor(context)

    (posted,) = webhook.bodies
    assert webhook.content_types == ["application/json"]
    assert posted["run_id"] == context.dagster_run.run_id
    assert posted["job_name"] == "feedback_scoring_job"
    assert posted["error"] == "RuntimeError: feedback batch b-17 has no rows"
    assert posted["failed_steps"] == [
        {"step_key": "score_feedback", "error": "RuntimeError: feedback batch b-17 has no rows"}
    ]
    assert posted["tags"]["fleetml/trigger"] == "edge_feedback_sensor"
    assert posted["tags"]["fleetml/feedback_file"] == "edge_feedback/b-17.parquet"
    assert posted["at"]
    assert log_lines(log_path) == [posted]


def test_without_a_webhook_only_the_log_is_written(tmp_path):
    log_path = tmp_path / "alerts.jsonl"
    with Webhook() as unused:
        run_failure_alert_sensor(failed_run_context(AlertSinkResource(log_path=str(log_path))))
        assert unused.bodies == []
    (alert,) = log_lines(log_path)
    assert alert["job_name"] == "feedback_scoring_job" and alert["kind"] == "run_failure"


@pytest.mark.parametrize("failure", ["refused", "http_500"])
def test_a_failing_webhook_is_logged_as_a_delivery_failure_and_never_raised(tmp_path, failure):
    log_path = tmp_path / "alerts.jsonl"
    if failure == "refused":
        sink = AlertSinkResource(log_path=str(log_path), webhook_url=closed_port_url())
        delivered = sink.send({"run_id": "r-1", "error": "boom"})
    else:
        with Webhook(status=500) as webhook:
            sink = AlertSinkResource(log_path=str(log_path), webhook_url=webhook.url)
            delivered = sink.send({"run_id": "r-1", "error": "boom"})
        assert len(webhook.bodies) == 1

    assert delivered is False
    alert, failure_line = log_lines(log_path)
    assert alert == {"run_id": "r-1", "error": "boom"}
    assert failure_line["delivery_failure"] == "webhook"
    assert failure_line["alert_run_id"] == "r-1"
    assert failure_line["error"]
    assert "secret" not in failure_line["webhook"] and "/hook" not in failure_line["webhook"]


def test_alerts_append_one_whole_line_each_from_concurrent_senders(tmp_path):
    log_path = tmp_path / "alerts.jsonl"
    sink = AlertSinkResource(log_path=str(log_path))
    payload = "x" * 20_000

    def send_many(worker: int) -> None:
        for i in range(25):
            sink.send({"worker": worker, "i": i, "payload": payload})

    threads = [threading.Thread(target=send_many, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    lines = log_lines(log_path)
    assert sorted((line["worker"], line["i"]) for line in lines) == [
        (w, i) for w in range(4) for i in range(25)
    ]


def test_a_redirect_is_a_delivery_failure_and_is_never_followed(tmp_path):
    log_path = tmp_path / "alerts.jsonl"

    def redirect_inwards(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", f"http://127.0.0.1:{handler.server.server_port}/internal/admin")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    with Webhook(answer=redirect_inwards) as webhook:
        sink = AlertSinkResource(log_path=str(log_path), webhook_url=webhook.url)
        delivered = sink.send({"run_id": "r-1"})

    assert delivered is False
    assert webhook.requests == [("POST", "/hooks/T0KEN-secret")]  # the redirect target received nothing
    _, failure_line = log_lines(log_path)
    assert "302" in failure_line["error"] and "redirect not followed" in failure_line["error"]
    assert "T0KEN" not in json.dumps(failure_line)


def test_a_dripping_webhook_cannot_hold_the_sender_past_its_deadline(tmp_path):
    """Each byte comes well inside any socket timeout; only a deadline on the whole delivery ends it."""
    log_path = tmp_path / "alerts.jsonl"
    deadline_s = 1.0

    def drip(handler: BaseHTTPRequestHandler) -> None:
        handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
        for _ in range(75):  # 15 s in all, unless the sender hangs up
            try:
                handler.wfile.write(b"x")
                handler.wfile.flush()
            except OSError:
                return
            time.sleep(0.2)

    with Webhook(answer=drip) as webhook:
        sink = AlertSinkResource(
            log_path=str(log_path), webhook_url=webhook.url, webhook_deadline_s=deadline_s
        )
        started = time.monotonic()
        delivered = sink.send({"run_id": "r-1"})
        elapsed_s = time.monotonic() - started
        # The deadline also hangs up on the server: the delivery does not linger on in the background.
        assert webhook.answered.wait(timeout=5)

    assert delivered is False
    assert elapsed_s < deadline_s + 3
    _, failure_line = log_lines(log_path)
    assert failure_line["error"] == "TimeoutError: no complete answer within 1 s"


def test_only_the_head_of_a_huge_answer_is_read(tmp_path):
    log_path = tmp_path / "alerts.jsonl"
    total_bytes = 64 * 1024 * 1024
    sent = []

    def flood(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(total_bytes))
        handler.end_headers()
        chunk = b"x" * (1024 * 1024)
        try:
            for _ in range(total_bytes // len(chunk)):
                handler.wfile.write(chunk)
                sent.append(len(chunk))
        except OSError:
            pass  # the sender hung up after its bounded read

    with Webhook(answer=flood) as webhook:
        sink = AlertSinkResource(log_path=str(log_path), webhook_url=webhook.url)
        assert sink.send({"run_id": "r-1"}) is True
        assert webhook.answered.wait(timeout=10)

    # Whatever the socket buffers took, the sender stopped reading long before the end.
    assert sum(sent) < total_bytes // 2
    assert log_lines(log_path) == [{"run_id": "r-1"}]


UNUSABLE_WEBHOOKS = [
    "hooks.example.invalid/services/T0KEN-secret",  # no scheme
    "http://hooks.example.invalid/services/T0KEN-secret",  # plain http off the host
    "http://10.0.0.7/services/T0KEN-secret",  # plain http to a private, not loopback, address
    "ftp://hooks.example.invalid/services/T0KEN-secret",
    "https:///services/T0KEN-secret",  # no host
    "https://hooks.example.invalid/services/T0KEN-secret\n",  # a newline pasted with the secret
    "https://hooks.example.invalid:T0KEN/secret",  # not a URL
]


@pytest.mark.parametrize("url", UNUSABLE_WEBHOOKS)
def test_an_unusable_webhook_url_fails_setup_naming_the_variable_and_never_the_token(tmp_path, caplog, url):
    log_path = tmp_path / "alerts.jsonl"
    sink = AlertSinkResource(log_path=str(log_path), webhook_url=url)

    with pytest.raises(AlertWebhookConfigError) as direct:
        sink.send({"run_id": "r-1"})
    with pytest.raises(Exception) as in_sensor:
        run_failure_alert_sensor(failed_run_context(sink))

    for error in (direct.value, in_sensor.value):
        told = "".join(traceback.format_exception(error))
        assert "FLEETML_ALERT_WEBHOOK" in told
        assert "T0KEN" not in told and "secret" not in told
    assert "T0KEN" not in caplog.text
    assert not log_path.exists()  # a misconfigured sink fails before it writes anything


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.invalid/services/T0KEN-secret",
        "http://127.0.0.1:8080/hook",
        "http://[::1]:8080/hook",
        "http://localhost:8080/hook",
    ],
)
def test_https_or_plain_http_to_loopback_is_a_usable_webhook(url):
    assert checked_webhook_url(url) == url
