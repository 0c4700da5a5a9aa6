"""`<model>/training_dataset` and `<model>/candidate_model`, built from a model spec."""

import time
from typing import Any

import dagster as dg

from assets.feedback import EDGE_FEEDBACK_KEY
from assets.model_spec import ModelSpec
from assets.step_resources import K8S_BATCH_STEP, K8S_TRAINING_STEP
from assets.validation import VALIDATED_KEY
from resources.lake import LakeResource
from resources.model_registry import ModelRegistryResource

CHALLENGER_ALIAS = "challenger"


class SweepConfig(dg.Config):
    """The hyperparameter grid (its product is the sweep) and the seed of every fit."""

    learning_rates: list[float] = [0.1]
    max_leaf_nodes: list[int] = [15, 31]
    l2_regularization: list[float] = [0.0]
    max_iter: int = 150
    seed: int = 7


def _sweep_md(results, best) -> str:
    lines = ["| learning_rate | max_leaf_nodes | l2 | validation macro-F1 | fit s |", "| --- | --- | --- | --- | --- |"]
    for result in results:
        marker = " **(chosen)**" if result is best else ""
        p = result.params
        lines.append(
            f"| {p['learning_rate']} | {p['max_leaf_nodes']} | {p['l2_regularization']} | "
            f"{result.validation_macro_f1:.4f}{marker} | {result.fit_seconds:.1f} |"
        )
    return "\n".join(lines)


REVIEW_COLUMNS = ["device_id", "event_id", "review_label"]


def build_training_assets(spec: ModelSpec, features_key: dg.AssetKey) -> list[dg.AssetsDefinition]:
    dataset_key = dg.AssetKey([spec.name, "training_dataset"])
    candidate_key = dg.AssetKey([spec.name, "candidate_model"])

    @dg.asset(
        key=dataset_key,
        deps=[VALIDATED_KEY, features_key, EDGE_FEEDBACK_KEY],
        group_name=spec.name,
        kinds={"pandas", "parquet"},
        code_version="1",
        io_manager_key="ref_io_manager",
        op_tags=K8S_BATCH_STEP,
    )
    def training_dataset(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.Output[dict]:
        """Every validated day with its features and review labels (unlabelled rows excluded and
        counted), split by time without letting a test device's events into training. Labels come from
        telemetry and, for deployed traffic, from reviewers through edge feedback."""
        import pandas as pd
        import pyarrow as pa

        from assets.training_data import assign_splits, labelled_rows, split_summary, with_edge_reviews

        reviews = pd.concat(
            [
                lake.read_table(EDGE_FEEDBACK_KEY.path, batch, columns=REVIEW_COLUMNS).to_pandas()
                for batch in lake.stored_partitions(EDGE_FEEDBACK_KEY.path)
            ]
            or [pd.DataFrame({name: [] for name in REVIEW_COLUMNS})],
            ignore_index=True,
        ).dropna().drop_duplicates(["device_id", "event_id"], keep="last").set_index(["device_id", "event_id"])["review_label"]

        partitions = sorted(set(lake.stored_partitions(VALIDATED_KEY.path)) & set(lake.stored_partitions(features_key.path)))
        if not partitions:
            raise dg.Failure(f"no day has both {VALIDATED_KEY.to_user_string()} and {features_key.to_user_string()}")
        frames, unlabelled = [], 0
        for partition in partitions:
            features = lake.read_table(features_key.path, partition).to_pandas()
            labels = lake.read_table(VALIDATED_KEY.path, partition, columns=["event_id", "device_id", "label"]).to_pandas()
            labelled, dropped = labelled_rows(features, with_edge_reviews(labels, reviews), spec.class_names)
            labelled["partition"] = partition
            frames.append(labelled)
            unlabelled += dropped
        frame = pd.concat(frames, ignore_index=True)
        frame["split"] = assign_splits(frame, spec.split)
        stored = lake.write_table(dataset_key.path, None, pa.Table.from_pandas(frame, preserve_index=False))
        summary = split_summary(frame, spec.class_names)
        test_partitions = sorted(frame.loc[frame["split"] == "test", "partition"].unique())
        ref = {
            "uri": stored.uri,
            "rows": stored.rows,
            "unlabelled_excluded": unlabelled,
            "partitions": partitions,
            "test_partitions": test_partitions,
            "test_devices": sorted(frame.loc[frame["split"] == "test", "device_id"].unique()),
            "splits": summary,
            "labels_from_edge_feedback": int((frame["label_source"] == "edge_feedback").sum()),
        }
        return dg.Output(
            ref,
            metadata={
                "dagster/row_count": stored.rows,
                "uri": dg.MetadataValue.path(stored.uri),
                "partitions": partitions,
                "test_partitions": test_partitions,
                "unlabelled_excluded": unlabelled,
                "labels_from_edge_feedback": ref["labels_from_edge_feedback"],
                **{f"rows_{split}": counts["total"] for split, counts in summary.items()},
                "class_balance": dg.MetadataValue.json(summary),
            },
        )

    @dg.asset(
        key=candidate_key,
        group_name=spec.name,
        kinds={"scikit-learn", "ray"},
        code_version="1",
        io_manager_key="ref_io_manager",
        ins={"training_dataset": dg.AssetIn(dataset_key)},
        op_tags=K8S_TRAINING_STEP,
    )
    def candidate_model(
        context: dg.AssetExecutionContext,
        config: SweepConfig,
        training_dataset: dict,
        lake: LakeResource,
        registry: ModelRegistryResource,
        ray_cluster: dg.ResourceParam[Any],
    ) -> dg.Output[dict]:
        """A gradient-boosted tree classifier on the window features: a hyperparameter sweep runs on
        Ray (one task per configuration) and the best by validation macro-F1 is registered,
        content-addressed, as the `challenger`."""
        from assets.training_sweep import best_of, parameter_grid, run_sweep_on_ray
        from resources.filesystems import read_parquet

        frame = read_parquet(training_dataset["uri"]).to_pandas()
        features = list(spec.feature_names)
        train, validation = frame[frame["split"] == "train"], frame[frame["split"] == "validation"]
        arrays = (
            train[features].to_numpy("float32"),
            train["label_index"].to_numpy(),
            validation[features].to_numpy("float32"),
            validation["label_index"].to_numpy(),
        )
        grid = parameter_grid(config.learning_rates, config.max_leaf_nodes, config.l2_regularization, config.max_iter)
        started = time.perf_counter()
        results = run_sweep_on_ray(grid, config.seed, *arrays)
        sweep_seconds = time.perf_counter() - started
        best = best_of(results)
        version = registry.register(
            spec.name,
            {"model.skops": best.model_skops},
            {
                "params": best.params,
                "seed": config.seed,
                "validation_macro_f1": best.validation_macro_f1,
                "sweep": [{"params": r.params, "validation_macro_f1": r.validation_macro_f1} for r in results],
                "feature_names": features,
                "class_names": list(spec.class_names),
                "training_dataset": training_dataset["uri"],
                "partitions": training_dataset["partitions"],
                "rows_train": int(len(train)),
                "code_version": context.assets_def.code_versions_by_key[candidate_key],
                "run_id": context.run.run_id,
            },
        )
        registry.set_alias(
            spec.name, CHALLENGER_ALIAS, version.version_id, actor=f"dagster run {context.run.run_id}",
            reason="trained by candidate_model", run_id=context.run.run_id,
        )
        ref = {
            "model_name": spec.name,
            "version_id": version.version_id,
            "sequence": version.sequence,
            "params": best.params,
            "validation_macro_f1": best.validation_macro_f1,
        }
        return dg.Output(
            ref,
            metadata={
                "version_id": version.version_id,
                "sequence": version.sequence,
                "params": dg.MetadataValue.json(best.params),
                "validation_macro_f1": best.validation_macro_f1,
                "sweep": dg.MetadataValue.md(_sweep_md(results, best)),
                "sweep_configurations": len(grid),
                # Connected before the step starts: the sweep's tasks ran on whichever cluster it points at.
                "ray_cluster": type(ray_cluster).__name__,
                "sweep_seconds": round(sweep_seconds, 2),
                "rows_train": int(len(train)),
                "rows_validation": int(len(validation)),
            },
        )

    return [training_dataset, candidate_model]
