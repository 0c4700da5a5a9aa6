"""Which version a bundle build gets, and when a rebuild is an earlier bundle (no Dagster here).

A bundle's version is `<contract>.<model sequence>.<build>`: the build number counts the different
bundles made from one registered model (a rotated key, a changed profile or threshold each make one).
Rebuilding with unchanged inputs must give the same bytes, not a new version: `release_bundle` first
rebuilds each earlier bundle of the model (newest first) under that bundle's version, and when the
bytes come out identical, the rebuild is that bundle.

Every field of a manifest is a function of the build's inputs except one: the one-thread latency p99
measured on the build host (`latency_p99_ms` of each passed device profile), which varies from run to
run of the same model by tens of percent. A rebuild takes that figure from the earlier bundle it
reproduces (the fresh measurement still gates the build through the profile check); anything else
that differs (a threshold, a profile's limits, the key, the lineage, a timestamp someone adds) changes
the bytes, so the build becomes a new version with its own measurement.
"""

import hashlib
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edge_packaging.manifest import Manifest

LATENCY_FIGURE = "latency_p99_ms"
"""The one measured (not derived) figure a manifest records per device profile."""

ProfileFigures = Mapping[str, Mapping[str, Any]]
BuildArchive = Callable[[str, ProfileFigures], bytes]
"""`(version, device profile figures) -> signed archive bytes`, every other manifest field fixed."""


@dataclass(frozen=True)
class EarlierBundle:
    """A bundle built before from the same registered model, read back and verified from the store."""

    version: str
    sha256: str
    manifest: Manifest


@dataclass(frozen=True)
class BundleRelease:
    """The archive to publish, its version, and the earlier version it reproduces (None if new)."""

    version: str
    archive: bytes = field(repr=False)
    sha256: str
    reproduces: str | None


def with_recorded_latency(fresh: ProfileFigures, earlier: Manifest) -> dict[str, dict[str, Any]]:
    """`fresh` profile figures with each measured latency replaced by the one `earlier` recorded for
    the same profile; profiles the earlier bundle did not pass keep their fresh measurement."""
    figures = {}
    for name, entry in fresh.items():
        recorded = earlier.device_profiles.get(name, {})
        figures[name] = dict(entry)
        if LATENCY_FIGURE in entry and LATENCY_FIGURE in recorded:
            figures[name][LATENCY_FIGURE] = recorded[LATENCY_FIGURE]
    return figures


def next_build_version(prefix: str, earlier_versions: Collection[str]) -> str:
    """`<prefix>.<n>`, n one past the highest build number already used under `prefix` (0 if none)."""
    builds = [
        int(version.removeprefix(f"{prefix}."))
        for version in earlier_versions
        if version.startswith(f"{prefix}.") and version.removeprefix(f"{prefix}.").isdigit()
    ]
    return f"{prefix}.{max(builds, default=-1) + 1}"


def release_bundle(
    build: BuildArchive,
    fresh_profiles: ProfileFigures,
    *,
    version_prefix: str,
    earlier_versions: Collection[str],
    earlier: Iterable[EarlierBundle],
) -> BundleRelease:
    """The bundle this build publishes: the first of `earlier` (newest first; consumed lazily) whose
    rebuild under its own version, with its recorded latency, reproduces its sha256, byte for byte;
    otherwise a new build number under `version_prefix` (past every one of `earlier_versions`), with
    the fresh figures."""
    for bundle in earlier:
        archive = build(bundle.version, with_recorded_latency(fresh_profiles, bundle.manifest))
        sha256 = hashlib.sha256(archive).hexdigest()
        if sha256 == bundle.sha256:
            return BundleRelease(bundle.version, archive, sha256, reproduces=bundle.version)
    version = next_build_version(version_prefix, earlier_versions)
    archive = build(version, fresh_profiles)
    return BundleRelease(version, archive, hashlib.sha256(archive).hexdigest(), reproduces=None)
