"""Model families of the platform. Each spec becomes a full lifecycle graph (see
`assets/model_lifecycle.py`)."""

from assets.model_gates import GateSpec
from assets.model_spec import ModelSpec, SplitSpec
from edge_packaging.features import FEATURE_NAMES
from edge_packaging.window_spec import HARSH_EVENT_CLASSES
from sensors.retraining_policy import RetrainPolicy

HARSH_EVENT_MODEL = ModelSpec(
    name="harsh_event",
    description="Harsh-event detection from a 4 s IMU window: brake, acceleration, turn, collision or benign.",
    class_names=HARSH_EVENT_CLASSES,
    fallback_class="benign",
    feature_names=FEATURE_NAMES,
    gates=GateSpec(
        min_macro_f1=0.80,
        min_recall={"collision": 0.85},
        slice_columns=("hardware_rev", "vehicle_class", "region"),
        max_slice_regression=0.05,
        min_slice_support=50,
    ),
    target_precision=0.90,
    min_decision_threshold=0.3,
    device_profiles=("vg-r3-gateway", "vg-r4-gateway", "dashcam-dc2"),
    contract_version=1,
    split=SplitSpec(test_days=2, holdout_device_share=0.3, seed=7),
)

HARSH_EVENT_RETRAIN_POLICY = RetrainPolicy(
    max_drifted_share=0.02,
    min_live_macro_f1=0.8,
    min_live_recall=0.7,
    min_reviewed_for_live=200,
    new_labels_for_retrain=5000,
    cooldown_seconds=6 * 3600,
)
