"""What a model family declares; the lifecycle assets (dataset, training, evaluation, gates,
registry, edge export, bundle, rollout) are built from it."""

from dataclasses import dataclass, field

from assets.model_gates import GateSpec


@dataclass(frozen=True)
class SplitSpec:
    """Time-based split that keeps test devices out of training.

    The last `test_days` days of the holdout devices are the test set; all days before them of the
    other devices train; everything else (other devices' last days, holdout devices' earlier days)
    validates (sweep selection and decision thresholds). No device has events in both train and test.
    """

    test_days: int = 2
    holdout_device_share: float = 0.3
    seed: int = 7


@dataclass(frozen=True)
class ModelSpec:
    """A classification model family trained on one feature asset and shipped to edge devices."""

    name: str
    class_names: tuple[str, ...]
    fallback_class: str
    feature_names: tuple[str, ...]
    gates: GateSpec
    target_precision: float
    min_decision_threshold: float
    """Floor of every event-class threshold (see `choose_thresholds`)."""
    device_profiles: tuple[str, ...]
    contract_version: int
    """Major version of the bundle's input/output contract; bump it when features or classes change."""
    split: SplitSpec = field(default_factory=SplitSpec)
    description: str = ""

    @property
    def key_prefix(self) -> str:
        return self.name
