"""The device runtime: an edge model scored the way a telematics gateway scores it.

One onnxruntime session on the CPU provider, sequential execution, a fixed number of intra-op threads
(one by default: a gateway gives the model one core) and no inter-op parallelism. The model arrives as
bytes (from a verified bundle); nothing is ever unpickled.

`device_session` is the only place fleetml creates an onnxruntime session, and it loads only an
`AdmittedModel` (`profiles.admit_model`): onnxruntime parses and instantiates every operator at load
time, so a model must pass a device profile's operator allow-list and opset check before that.
"""

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge_packaging.export import CLASS_NAMES_METADATA_KEY, PROBABILITIES_OUTPUT
from edge_packaging.onnx_features import IMU_INPUT, SPEED_INPUT
from edge_packaging.window_spec import IMU_CHANNELS, SAMPLES_PER_WINDOW

if TYPE_CHECKING:
    import numpy as np
    import onnxruntime as ort

    from edge_packaging.profiles import AdmittedModel

DEFAULT_WARMUP_CALLS = 10


@dataclass(frozen=True)
class LatencyStats:
    """Wall-clock latency of single calls, in milliseconds."""

    p50_ms: float
    p99_ms: float
    repeats: int


def measure_call_latency_ms(
    call: Callable[[], object], repeats: int, warmup: int = DEFAULT_WARMUP_CALLS
) -> LatencyStats:
    """Time `repeats` calls of `call` one by one (after `warmup` untimed calls) and summarise them.

    Shared by the edge runtime and by benchmarks of the Python pipeline, so both are timed alike.
    """
    import numpy as np

    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    for _ in range(warmup):
        call()
    elapsed_ms = np.empty(repeats)
    for index in range(repeats):
        start = time.perf_counter_ns()
        call()
        elapsed_ms[index] = (time.perf_counter_ns() - start) / 1e6
    return LatencyStats(
        p50_ms=float(np.percentile(elapsed_ms, 50)),
        p99_ms=float(np.percentile(elapsed_ms, 99)),
        repeats=repeats,
    )


def device_session(model: "AdmittedModel", threads: int = 1) -> "ort.InferenceSession":
    """An onnxruntime session set up as a gateway runs one, for a model a device profile admitted.

    Plain bytes are refused with a TypeError: checking after the load would be too late, and a session
    made anywhere else would skip the check.
    """
    import onnxruntime as ort

    from edge_packaging.profiles import AdmittedModel

    if not isinstance(model, AdmittedModel):
        raise TypeError(
            "onnxruntime loads only a model a device profile admitted: "
            "pass edge_packaging.profiles.admit_model(model_bytes, profiles)"
        )
    if threads < 1:
        raise ValueError("threads must be at least 1")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # A spinning worker would burn the gateway's other core between inferences.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(bytes(model), sess_options=options, providers=["CPUExecutionProvider"])


class EdgeModelSession:
    """An edge model (raw window in, class probabilities out) loaded as a device loads it: admitted by
    the device's profile (`profiles.admit_model`) first, then one session from `device_session`."""

    def __init__(self, model: "AdmittedModel", threads: int = 1) -> None:
        self.threads = threads
        self._session = device_session(model, threads)
        inputs = {node.name for node in self._session.get_inputs()}
        outputs = [node.name for node in self._session.get_outputs()]
        if inputs != {IMU_INPUT, SPEED_INPUT} or PROBABILITIES_OUTPUT not in outputs:
            raise ValueError(
                f"not an edge model: inputs {sorted(inputs)}, outputs {outputs}; expected inputs "
                f"{IMU_INPUT}, {SPEED_INPUT} and output {PROBABILITIES_OUTPUT}"
            )
        metadata = self._session.get_modelmeta().custom_metadata_map
        self.class_names: tuple[str, ...] | None = (
            tuple(json.loads(metadata[CLASS_NAMES_METADATA_KEY]))
            if CLASS_NAMES_METADATA_KEY in metadata
            else None
        )

    @property
    def providers(self) -> list[str]:
        """Execution providers the session runs on (the CPU provider only)."""
        return self._session.get_providers()

    @property
    def session_options(self):
        """The onnxruntime `SessionOptions` in force (thread counts, execution mode)."""
        return self._session.get_session_options()

    def predict_proba(self, imu: "np.ndarray", speed_kph: "np.ndarray") -> "np.ndarray":
        """Class probabilities float32 [N, n_classes] for windows `imu` [N, 6, 200] and speeds [N] (km/h)."""
        import numpy as np

        imu = np.ascontiguousarray(imu, dtype=np.float32)
        speed_kph = np.ascontiguousarray(speed_kph, dtype=np.float32).reshape(-1)
        if imu.ndim != 3 or imu.shape[1:] != (len(IMU_CHANNELS), SAMPLES_PER_WINDOW):
            raise ValueError(f"imu must be [N, {len(IMU_CHANNELS)}, {SAMPLES_PER_WINDOW}], got {imu.shape}")
        if speed_kph.shape[0] != imu.shape[0]:
            raise ValueError("speed_kph must hold one value per window")
        (probabilities,) = self._session.run([PROBABILITIES_OUTPUT], {IMU_INPUT: imu, SPEED_INPUT: speed_kph})
        return probabilities

    def measure_latency_ms(
        self,
        imu_one_window_batch: "np.ndarray",
        repeats: int = 200,
        speed_kph: "np.ndarray | None" = None,
        warmup: int = DEFAULT_WARMUP_CALLS,
    ) -> LatencyStats:
        """p50/p99 latency of scoring one window [1, 6, 200], as the device does on each trigger.

        The speed only feeds one feature and does not change the work done, so it defaults to 0 km/h.
        """
        import numpy as np

        imu = np.ascontiguousarray(imu_one_window_batch, dtype=np.float32)
        if imu.shape != (1, len(IMU_CHANNELS), SAMPLES_PER_WINDOW):
            raise ValueError(f"latency is measured on one window [1, 6, 200], got {imu.shape}")
        speed = np.zeros(1, np.float32) if speed_kph is None else np.asarray(speed_kph, np.float32).reshape(1)
        feeds = {IMU_INPUT: imu, SPEED_INPUT: speed}
        return measure_call_latency_ms(
            lambda: self._session.run([PROBABILITIES_OUTPUT], feeds), repeats, warmup
        )
