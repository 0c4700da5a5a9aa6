"""The device contract of fleetml: what an edge device uploads, how a window becomes features, and
(in later modules) how a model is exported, bundled, signed and verified.

This package imports no Dagster, so a device team can use it without the platform.
"""
