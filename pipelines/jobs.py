"""Jobs of the code location."""

import dagster as dg

from assets.features import WINDOW_FEATURES_KEY

telemetry_job = dg.define_asset_job(
    name="telemetry_job",
    selection=dg.AssetSelection.groups("telemetry") | dg.AssetSelection.assets(WINDOW_FEATURES_KEY),
    description="One day of telemetry: ingest the landing zone, validate, compute harsh-event features.",
)
