"""Whatever bytes a device uploads, the readers either return a conformed table or refuse the upload
with a one-line reason: never another exception, never a table outside the contract."""

import datetime as dt
import io

import pyarrow.parquet as pq
import pytest
from feedback_uploads import feedback_table
from fuzzing import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st
from telemetry_factory import telemetry_table

from edge_packaging.feedback_contract import FEEDBACK_SCHEMA, conform_to_feedback_contract
from edge_packaging.telemetry_contract import TELEMETRY_SCHEMA, conform_to_telemetry_contract
from resources.landing_zone import UnreadableUpload, inspect_upload, parse_upload


def _bytes(table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


GENUINE = {
    "telemetry": (_bytes(telemetry_table(6, dt.date(2026, 11, 1))), TELEMETRY_SCHEMA, conform_to_telemetry_contract),
    "feedback": (_bytes(feedback_table(rows=4)), FEEDBACK_SCHEMA, conform_to_feedback_contract),
}
edits = st.lists(
    st.tuples(st.sampled_from(["flip", "insert", "delete", "truncate"]), st.integers(0, 10**6), st.integers(0, 255)),
    min_size=1,
    max_size=4,
)


def damaged(data: bytes, steps: list[tuple[str, int, int]]) -> bytes:
    out = bytearray(data)
    for kind, position, byte in steps:
        at = position % (len(out) + 1)
        if kind == "flip" and at < len(out):
            out[at] ^= byte or 1
        elif kind == "insert":
            out[at:at] = bytes([byte])
        elif kind == "delete" and at < len(out):
            del out[at]
        elif kind == "truncate":
            del out[at:]
    return bytes(out)


@pytest.mark.fuzz
@pytest.mark.parametrize("contract", sorted(GENUINE))
@fuzz_settings(150)
@given(steps=edits)
def test_damaged_uploads_are_conformed_or_refused_in_one_line(contract, steps):
    data, schema, conform = GENUINE[contract]
    upload = damaged(data, steps)
    for read in (lambda: parse_upload(upload, conform).table, lambda: inspect_upload(upload, schema)):
        try:
            result = read()
        except UnreadableUpload as refusal:
            assert str(refusal) and "\n" not in str(refusal)
            continue
        if hasattr(result, "schema"):
            assert result.schema.names == schema.names
