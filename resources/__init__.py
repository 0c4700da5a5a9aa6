"""Dagster resources: the lake, the landing zone, Spark, and (later) Ray, the registry and signing keys."""
