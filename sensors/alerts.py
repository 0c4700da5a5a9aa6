"""Run-failure alerting: every failed run of the code location becomes one alert in the alert sink.

The alert carries what an on-call engineer needs to triage without opening the UI first: the run and
job, the run's tags (the `fleetml/*` tags say why the run was started, e.g. which feedback upload or
which drift signal), the first line of the error, and the steps that failed.
"""

import datetime as dt
from typing import Any

import dagster as dg

from resources.alert_sink import AlertSinkResource

SENSOR_NAME = "run_failure_alert_sensor"


def _first_line(message: str | None) -> str:
    stripped = (message or "").strip()
    return stripped.splitlines()[0] if stripped else ""


def _root_cause_line(error: Any) -> str:
    """First line of the innermost cause: the user's exception rather than Dagster's wrapper around it."""
    if error is None:
        return ""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    return _first_line(error.message)


def failure_alert(context: dg.RunFailureSensorContext) -> dict[str, Any]:
    """The alert for one failed run (plain JSON-able values)."""
    run = context.dagster_run
    failure_data = context.failure_event.event_specific_data
    failed_steps = [
        {
            "step_key": event.step_key,
            "error": _root_cause_line(getattr(event.event_specific_data, "error", None)),
        }
        for event in context.get_step_failure_events()
    ]
    # The first failed step says what broke; a run that failed outside any step (its worker died, its
    # launch failed) has only the run-level error, or at least Dagster's message.
    first_error = next((step["error"] for step in failed_steps if step["error"]), "")
    error = (
        first_error
        or _root_cause_line(getattr(failure_data, "error", None))
        or _first_line(context.failure_event.message)
    )
    failure_reason = getattr(failure_data, "failure_reason", None)
    return {
        "at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "kind": "run_failure",
        "run_id": run.run_id,
        "job_name": run.job_name,
        "partition_key": run.tags.get("dagster/partition"),
        "tags": dict(run.tags),
        "error": error,
        "failure_reason": failure_reason.value if failure_reason is not None else None,
        "failed_steps": failed_steps,
    }


@dg.run_failure_sensor(
    name=SENSOR_NAME,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="One alert (JSON-lines log, optional webhook) for every failed run of the code location.",
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, alert_sink: AlertSinkResource) -> None:
    """Sends an alert for the failed run to the alert sink."""
    alert = failure_alert(context)
    delivered = alert_sink.send(alert)
    log = context.log.info if delivered else context.log.warning
    log(
        f"alert for failed run {alert['run_id']} of {alert['job_name']}: {alert['error']}"
        + ("" if delivered else " (webhook delivery failed; see the alert log)")
    )
