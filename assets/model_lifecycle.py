"""The lifecycle asset graph of one model family, built from its spec.

training_dataset -> candidate_model -> model_evaluation [gates] -> champion_model -> edge_model
[parity] -> edge_bundle [profiles, signature] -> rollout_plan. A new model family is a spec (and,
at most, a trainer); this module gives it the whole graph.
"""

import dagster as dg

from assets.edge import build_edge_assets
from assets.evaluation import build_evaluation_asset
from assets.model_spec import ModelSpec
from assets.promotion import build_promotion_asset
from assets.training import build_training_assets


def build_model_lifecycle(spec: ModelSpec, features_key: dg.AssetKey) -> list[dg.AssetsDefinition]:
    return [
        *build_training_assets(spec, features_key),
        build_evaluation_asset(spec),
        build_promotion_asset(spec),
        *build_edge_assets(spec),
    ]


def lifecycle_selection(spec: ModelSpec) -> dg.AssetSelection:
    """The training lifecycle: the spec's group without its partitioned feature and monitoring assets."""
    outside = ("window_features", "feedback_features", "drift_report", "live_performance")
    return dg.AssetSelection.groups(spec.name) - dg.AssetSelection.assets(*(dg.AssetKey([spec.name, n]) for n in outside))
