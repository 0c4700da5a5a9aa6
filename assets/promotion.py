"""`<model>/champion_model`: promotion in the registry, or a rollback pinned by config."""

import dagster as dg

from assets.evaluation import CHAMPION_ALIAS, load_registered_classifier, validation_thresholds
from assets.model_spec import ModelSpec
from resources.model_registry import ModelRegistryResource


class PromotionConfig(dg.Config):
    """Leave empty to promote the gated candidate; set `pin_version` to make that registered version
    the champion instead (a rollback, or a roll-forward), whatever the candidate is."""

    pin_version: str | None = None
    target_precision: float | None = None


def build_promotion_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=dg.AssetKey([spec.name, "champion_model"]),
        group_name=spec.name,
        kinds={"scikit-learn"},
        code_version="1",
        io_manager_key="ref_io_manager",
        ins={
            "candidate_model": dg.AssetIn(dg.AssetKey([spec.name, "candidate_model"])),
            "model_evaluation": dg.AssetIn(dg.AssetKey([spec.name, "model_evaluation"])),
            "training_dataset": dg.AssetIn(dg.AssetKey([spec.name, "training_dataset"])),
        },
    )
    def champion_model(
        context: dg.AssetExecutionContext,
        config: PromotionConfig,
        candidate_model: dict,
        model_evaluation: dict,
        training_dataset: dict,
        registry: ModelRegistryResource,
    ) -> dg.Output[dict]:
        """The model devices should run: the candidate once it passed every gate, recorded in the
        registry's append-only history under the `champion` alias. A candidate that failed a gate is
        never promoted, even when this asset is materialized on its own."""
        from resources.filesystems import read_parquet

        run_id = context.run.run_id
        if config.pin_version:
            version = registry.version(spec.name, config.pin_version)
            frame = read_parquet(training_dataset["uri"]).to_pandas()
            model = load_registered_classifier(registry, spec.name, version.version_id)
            choices = validation_thresholds(model, frame, spec, config.target_precision or spec.target_precision)
            thresholds = {name: choice.threshold for name, choice in choices.items()}
            reason = f"pinned by config to version {version.short_id}"
        else:
            gates = model_evaluation["gates"]
            if model_evaluation["candidate_version"] != candidate_model["version_id"]:
                raise dg.Failure("model_evaluation is of another candidate: re-evaluate before promoting")
            if not gates["passed"]:
                raise dg.Failure(
                    "candidate failed its gates and is not promoted: "
                    + "; ".join(failure["message"] for failure in gates["failures"])
                )
            version = registry.version(spec.name, candidate_model["version_id"])
            thresholds = model_evaluation["candidate"]["thresholds"]
            reason = f"passed gates: macro-F1 {model_evaluation['candidate']['metrics']['macro_f1']:.3f}"
        current = registry.alias(spec.name, CHAMPION_ALIAS)
        if current is None or current.version_id != version.version_id:
            registry.set_alias(spec.name, CHAMPION_ALIAS, version.version_id, actor=f"dagster run {run_id}", reason=reason, run_id=run_id)
            previous_version_id = current.version_id if current else None
        else:
            earlier = [e for e in registry.history(spec.name, alias=CHAMPION_ALIAS) if e.version_id == version.version_id]
            previous_version_id = earlier[-1].previous_version_id if earlier else None
        ref = {
            "model_name": spec.name,
            "version_id": version.version_id,
            "sequence": version.sequence,
            "thresholds": thresholds,
            "previous_version_id": previous_version_id,
            "reason": reason,
        }
        return dg.Output(
            ref,
            metadata={
                "version_id": version.version_id,
                "sequence": version.sequence,
                "previous_version_id": previous_version_id or "none",
                "reason": reason,
                "thresholds": dg.MetadataValue.json(thresholds),
                "history": dg.MetadataValue.md(
                    "| at | version | previous | actor | reason |\n| --- | --- | --- | --- | --- |\n"
                    + "\n".join(
                        f"| {e.at} | `{e.version_id[:12]}` | `{(e.previous_version_id or '-')[:12]}` | {e.actor} | {e.reason} |"
                        for e in registry.history(spec.name, alias=CHAMPION_ALIAS)[-10:]
                    )
                ),
            },
        )

    return champion_model
