"""Live figures count each event once, whatever a device re-sends."""

import pandas as pd

from assets.live_metrics import distinct_events, new_reviewed_events, performance_by_group

CLASSES = ("benign", "harsh_brake")


def feedback(rows: list[tuple[str, str, str, str | None]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["device_id", "event_id", "predicted_label", "review_label"]).assign(model_version="1.1.0")


def test_an_event_re_sent_in_another_batch_counts_once_in_live_figures():
    first = feedback([("dev-a", "e1", "harsh_brake", "benign"), ("dev-a", "e2", "benign", "benign")])
    resent = feedback([("dev-a", "e1", "harsh_brake", "benign")])  # the same event, a retry
    other_device = feedback([("dev-b", "e1", "harsh_brake", "harsh_brake")])  # another device's own e1

    events = distinct_events(pd.concat([first, resent, other_device], ignore_index=True))

    assert len(events) == 3
    assert performance_by_group(events, CLASSES, [])["all"]["reviewed"] == 3


def test_only_reviews_no_earlier_batch_brought_are_new_labels():
    earlier = feedback([("dev-a", "e1", "harsh_brake", "benign"), ("dev-a", "e2", "benign", None)])
    batch = feedback(
        [
            ("dev-a", "e1", "harsh_brake", "benign"),  # re-sent, reviewed before
            ("dev-a", "e2", "benign", "benign"),  # reviewed for the first time now
            ("dev-b", "e1", "benign", "benign"),  # another device's event of the same id
            ("dev-b", "e1", "benign", "benign"),  # and its duplicate within the batch
            ("dev-b", "e3", "benign", None),
        ]
    )
    assert new_reviewed_events(batch, earlier) == 2
    assert new_reviewed_events(batch, batch.iloc[0:0]) == 3
