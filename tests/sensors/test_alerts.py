import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import dagster as dg
import pytest

from resources.alert_sink import AlertSinkResource
from sensors.alerts import SENSOR_NAME, run_failure_alert_sensor


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """The webhook under test listens on 127.0.0.1: a proxy from the environment must not intercept it."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


class Webhook:
    """A local HTTP endpoint that records every POST body and answers with `status`."""

    def __init__(self, status: int = 204):
        self.bodies: list[dict] = []
        self.content_types: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                outer.bodies.append(json.loads(self.rfile.read(length)))
                outer.content_types.append(self.headers["Content-Type"])
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
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


@dg.job(tags={"fleetml/trigger": "edge_feedback_sensor", "fleetml/feedback_file": "edge_feedback/b-17.parquet"})
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
    assert posted["failed_steps"] == [{"step_key": "score_feedback", "error": "RuntimeError: feedback batch b-17 has no rows"}]
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
    assert sorted((line["worker"], line["i"]) for line in lines) == [(w, i) for w in range(4) for i in range(25)]
