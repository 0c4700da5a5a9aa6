"""Uploads an attacker with write access to the landing zone could send, for the tests."""

import io

import pyarrow as pa
import pyarrow.parquet as pq

from edge_packaging.feedback_contract import FEEDBACK_SCHEMA


def parquet_bytes(table: pa.Table) -> bytes:
    """Without the Arrow schema in the footer, as a non-Arrow writer sends it: readers then expand
    dictionary-encoded strings unless told otherwise."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", use_dictionary=True, store_schema=False)
    return sink.getvalue()


def dictionary_bomb(rows: int = 100_000, value_bytes: int = 8192) -> bytes:
    """A feedback-shaped upload of a few hundred bytes whose strings decode to rows x value_bytes."""
    value = pa.array(["x" * value_bytes]).dictionary_encode()
    repeated = pa.DictionaryArray.from_arrays(pa.array([0] * rows, pa.int32()), value.dictionary)
    columns = {}
    for field in FEEDBACK_SCHEMA:
        if pa.types.is_string(field.type):
            columns[field.name] = repeated
        elif pa.types.is_list(field.type):
            columns[field.name] = pa.array([[]] * rows, field.type)
        else:
            columns[field.name] = pa.array([0] * rows).cast(field.type)
    return parquet_bytes(pa.table(columns))
