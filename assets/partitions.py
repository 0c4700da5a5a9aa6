"""Partitions shared by the assets of the telemetry lineage."""

import dagster as dg

TELEMETRY_START_DATE = "2024-01-01"

daily_telemetry_partitions = dg.DailyPartitionsDefinition(start_date=TELEMETRY_START_DATE, timezone="UTC")
"""One partition per UTC day of device telemetry, matching `landing/telemetry/date=YYYY-MM-DD/`."""

feedback_batches = dg.DynamicPartitionsDefinition(name="edge_feedback_batches")
"""One partition per edge-feedback upload batch, added by the edge-feedback sensor."""
