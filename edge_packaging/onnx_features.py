"""The window features of `edge_packaging.features` as an ONNX graph, so the device computes them itself.

`feature_graph` mirrors `_features_of_block` operation by operation, in float32 and with the same
constants (taken from `features.py`, rounded to float32 the same way), using only default-domain
operators that small device runtimes implement: reductions, elementwise maths, fixed slices, casts,
Concat and Reshape. Elementwise steps are IEEE-exact on both sides, so the only differences left are
the summation order inside ReduceSum/ReduceMean (numpy sums pairwise): a few float32 ulps.

The tests hold this graph to the numpy definition column by column; a change to `features.py` that is
not mirrored here fails them.
"""

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from edge_packaging.features import (
    CHANNEL_STATISTICS,
    COLLISION_THRESHOLD_MPS2,
    FEATURE_NAMES,
    FREE_FALL_THRESHOLD_MPS2,
    HIGH_BAND_SMOOTHING_SAMPLES,
    HORIZONTAL_THRESHOLDS_MPS2,
    MPS_TO_KPH,
)
from edge_packaging.window_spec import GRAVITY_MPS2, IMU_CHANNELS, SAMPLE_RATE_HZ, SAMPLES_PER_WINDOW

if TYPE_CHECKING:
    import numpy as np
    import onnx

IMU_INPUT = "imu"
SPEED_INPUT = "speed_kph"
FEATURES_OUTPUT = "features"
BATCH_DIM = "N"
MIN_OPSET = 13
"""ReduceSum and Unsqueeze take their axes as an input from opset 13 on; older runtimes are
not worth a second code path."""
FEATURE_NAMES_METADATA_KEY = "feature_names"
_INTERNAL_PREFIX = "features/"
"""Every intermediate tensor is named under this prefix, so the graph merges with a converted
classifier without name clashes."""


class _GraphBuilder:
    """Appends nodes to one graph, names their outputs uniquely and shares identical constants."""

    def __init__(self, opset: int) -> None:
        from onnx import TensorProto, helper, numpy_helper

        self.float_type = TensorProto.FLOAT
        self._helper = helper
        self._numpy_helper = numpy_helper
        self.opset = opset
        self.nodes: list = []
        self.initializers: list = []
        self._constants: dict[tuple, str] = {}
        self._used: dict[str, int] = {}

    def _fresh(self, hint: str) -> str:
        count = self._used.get(hint, 0)
        self._used[hint] = count + 1
        return f"{_INTERNAL_PREFIX}{hint}" if count == 0 else f"{_INTERNAL_PREFIX}{hint}_{count}"

    def constant(self, value: "np.ndarray | np.float32 | Sequence[int]", hint: str) -> str:
        """An initializer holding `value` (float32 scalars stay float32; int lists become int64)."""
        import numpy as np

        array = np.asarray(value)
        if array.dtype.kind in "iu":
            array = array.astype(np.int64)
        elif array.dtype != np.float32:
            raise TypeError(f"constant {hint} must be float32 or integer, got {array.dtype}")
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._constants:
            name = self._fresh(hint)
            self.initializers.append(self._numpy_helper.from_array(array, name=name))
            self._constants[key] = name
        return self._constants[key]

    def op(self, op_type: str, inputs: Sequence[str], hint: str, **attributes) -> str:
        output = self._fresh(hint)
        self.nodes.append(
            self._helper.make_node(op_type, list(inputs), [output], name=output, **attributes)
        )
        return output

    def reduce(self, op_type: str, x: str, hint: str, axis: int = -1, keepdims: bool = False) -> str:
        """`op_type` over one axis; axes moved from attribute to input in opset 13 (ReduceSum) and 18
        (ReduceMean, ReduceMax, ReduceMin)."""
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, [x, self.constant([axis], "axes")], hint, keepdims=int(keepdims))
        return self.op(op_type, [x], hint, axes=[axis], keepdims=int(keepdims))

    def slice(self, x: str, axis: int, start: int, end: int, hint: str) -> str:
        """`x[..., start:end, ...]` along `axis`, like a numpy basic slice."""
        return self.op(
            "Slice",
            [x, self.constant([start], "start"), self.constant([end], "end"), self.constant([axis], "axes")],
            hint,
        )


def _high_band_energy(b: _GraphBuilder, signal: str, hint: str) -> str:
    """Mirror of `features._high_band_energy` on a [N, 1, T] signal; returns [N, 1]."""
    import numpy as np

    k = HIGH_BAND_SMOOTHING_SAMPLES
    length = SAMPLES_PER_WINDOW - k + 1
    smoothed = b.slice(signal, 2, 0, length, f"{hint}_shift0")
    for shift in range(1, k):
        shifted = b.slice(signal, 2, shift, shift + length, f"{hint}_shift{shift}")
        smoothed = b.op("Add", [smoothed, shifted], f"{hint}_moving_sum")
    smoothed = b.op("Mul", [smoothed, b.constant(np.float32(1.0 / k), "one_over_k")], f"{hint}_smoothed")
    centre = b.slice(signal, 2, k // 2, k // 2 + length, f"{hint}_centre")
    residual = b.op("Sub", [centre, smoothed], f"{hint}_residual")
    squared = b.op("Mul", [residual, residual], f"{hint}_residual_sq")
    return b.reduce("ReduceMean", squared, hint)


def _feature_columns(b: _GraphBuilder, imu: str, speed_kph: str) -> list[tuple[tuple[str, ...], str]]:
    """The feature columns, each as (names it holds, tensor [N, len(names)]), in FEATURE_NAMES order.

    The statements follow `features._features_of_block` one for one; numpy's `x[:, c]` is a Slice of
    width 1 here, which keeps a [N, 1, T] shape so that reductions over T (keepdims=0) give columns.
    """
    import numpy as np

    sample_s = np.float32(1.0 / SAMPLE_RATE_HZ)
    columns: list[tuple[tuple[str, ...], str]] = []

    stats = {
        "mean": b.reduce("ReduceMean", imu, "channel_mean", keepdims=True),
        "min": b.reduce("ReduceMin", imu, "channel_min", keepdims=True),
        "max": b.reduce("ReduceMax", imu, "channel_max", keepdims=True),
    }
    centred = b.op("Sub", [imu, stats["mean"]], "centred")
    centred_sq = b.op("Mul", [centred, centred], "centred_sq")
    variance = b.reduce("ReduceMean", centred_sq, "channel_var", keepdims=True)
    stats["std"] = b.op("Sqrt", [variance], "channel_std")
    # [N, 6, 4] flattened row-major is channel-major, statistic-minor: ax_mean, ax_std, ..., gz_max.
    per_channel = b.op("Concat", [stats[name] for name in CHANNEL_STATISTICS], "channel_stats", axis=2)
    # Reshape's 0 copies the batch dimension, which keeps an empty batch valid (a -1 would not).
    flat_shape = b.constant([0, len(IMU_CHANNELS) * len(CHANNEL_STATISTICS)], "shape")
    columns.append(
        (
            tuple(f"{channel}_{stat}" for channel in IMU_CHANNELS for stat in CHANNEL_STATISTICS),
            b.op("Reshape", [per_channel, flat_shape], "channel_stats_flat"),
        )
    )

    ax = b.slice(imu, 1, 0, 1, "ax")
    ay = b.slice(imu, 1, 1, 2, "ay")
    az = b.slice(imu, 1, 2, 3, "az")
    ax_sq = b.op("Mul", [ax, ax], "ax_sq")
    ay_sq = b.op("Mul", [ay, ay], "ay_sq")
    az_sq = b.op("Mul", [az, az], "az_sq")
    horizontal_sq = b.op("Add", [ax_sq, ay_sq], "horizontal_sq")
    magnitude = b.op("Sqrt", [b.op("Add", [horizontal_sq, az_sq], "magnitude_sq")], "magnitude")
    horizontal = b.op("Sqrt", [horizontal_sq], "horizontal")
    gravity = b.constant(np.float32(GRAVITY_MPS2), "gravity")
    deviation_from_g = b.op("Sub", [magnitude, gravity], "deviation_from_g")
    deviation_sq = b.op("Mul", [deviation_from_g, deviation_from_g], "deviation_sq")
    columns += [
        (("accel_mag_max_mps2",), b.reduce("ReduceMax", magnitude, "accel_mag_max")),
        (("accel_mag_min_mps2",), b.reduce("ReduceMin", magnitude, "accel_mag_min")),
        (("accel_mag_energy",), b.reduce("ReduceMean", deviation_sq, "accel_mag_energy")),
        (("accel_horizontal_max_mps2",), b.reduce("ReduceMax", horizontal, "accel_horizontal_max")),
    ]

    accel = b.slice(imu, 1, 0, 3, "accel")
    accel_next = b.slice(accel, 2, 1, SAMPLES_PER_WINDOW, "accel_next")
    accel_prev = b.slice(accel, 2, 0, SAMPLES_PER_WINDOW - 1, "accel_prev")
    step_abs = b.op("Abs", [b.op("Sub", [accel_next, accel_prev], "accel_step")], "accel_step_abs")
    step_max_abs = b.reduce("ReduceMax", step_abs, "accel_step_max_abs")
    sample_rate = b.constant(np.float32(SAMPLE_RATE_HZ), "sample_rate_hz")
    columns.append(
        (
            ("jerk_x_max_abs_mps3", "jerk_y_max_abs_mps3", "jerk_z_max_abs_mps3"),
            b.op("Mul", [step_max_abs, sample_rate], "jerk_max_abs"),
        )
    )

    def seconds_where(comparison: str, signal: str, threshold: float, hint: str) -> str:
        """Time in s where `signal` compares true to `threshold`: count of samples times the period."""
        mask = b.op(comparison, [signal, b.constant(np.float32(threshold), "threshold")], f"{hint}_mask")
        mask_f32 = b.op("Cast", [mask], f"{hint}_mask_f32", to=b.float_type)
        samples = b.reduce("ReduceSum", mask_f32, f"{hint}_samples")
        return b.op("Mul", [samples, b.constant(sample_s, "sample_s")], hint)

    for threshold in HORIZONTAL_THRESHOLDS_MPS2:
        name = f"time_horizontal_above_{int(threshold)}mps2_s"
        columns.append(((name,), seconds_where("Greater", horizontal, threshold, name)))
    columns += [
        (
            ("time_mag_above_2g_s",),
            seconds_where("Greater", magnitude, COLLISION_THRESHOLD_MPS2, "time_mag_above_2g_s"),
        ),
        (
            ("time_mag_below_0_3g_s",),
            seconds_where("Less", magnitude, FREE_FALL_THRESHOLD_MPS2, "time_mag_below_0_3g_s"),
        ),
    ]

    # Channel 5 is gz (yaw rate) and 3:6 the gyroscope, as in features.py.
    gz_abs = b.op("Abs", [b.slice(imu, 1, 5, 6, "gz")], "gz_abs")
    gyro = b.slice(imu, 1, 3, 6, "gyro")
    gyro_sq = b.op("Mul", [gyro, gyro], "gyro_sq")
    gyro_sq_sum = b.reduce("ReduceSum", gyro_sq, "gyro_sq_sum", axis=1, keepdims=True)
    gyro_magnitude = b.op("Sqrt", [gyro_sq_sum], "gyro_mag")
    speed_column = b.op("Unsqueeze", [speed_kph, b.constant([1], "axes")], "speed_column")
    speed_change_factor = b.constant(sample_s * np.float32(MPS_TO_KPH), "speed_change_factor")
    ax_sum = b.reduce("ReduceSum", ax, "ax_sum")
    columns += [
        (("yaw_rate_max_abs_radps",), b.reduce("ReduceMax", gz_abs, "yaw_rate_max_abs")),
        (("gyro_mag_max_radps",), b.reduce("ReduceMax", gyro_magnitude, "gyro_mag_max")),
        (("speed_kph",), speed_column),
        (("speed_change_est_kph",), b.op("Mul", [ax_sum, speed_change_factor], "speed_change_est")),
        (("az_high_band_energy",), _high_band_energy(b, az, "az_high_band_energy")),
        (("accel_mag_high_band_energy",), _high_band_energy(b, magnitude, "accel_mag_high_band_energy")),
    ]
    return columns


def feature_graph(opset: int = 17) -> "onnx.ModelProto":
    """The window features as a standalone ONNX model in the default domain at `opset` (>= 13).

    Inputs `imu` float32 [N, 6, 200] (ax, ay, az in m/s^2, gx, gy, gz in rad/s) and `speed_kph`
    float32 [N]; output `features` float32 [N, 41], columns in `FEATURE_NAMES` order (also stored as
    JSON in the model's `feature_names` metadata). Numerically it matches
    `compute_window_features` to float32 rounding.
    """
    import onnx
    from onnx import TensorProto, helper

    if opset < MIN_OPSET:
        raise ValueError(f"the feature graph needs opset >= {MIN_OPSET}, got {opset}")
    if opset > onnx.defs.onnx_opset_version():
        newest = onnx.defs.onnx_opset_version()
        raise ValueError(f"onnx {onnx.__version__} knows opsets up to {newest}, got {opset}")
    b = _GraphBuilder(opset)
    columns = _feature_columns(b, IMU_INPUT, SPEED_INPUT)
    names = tuple(name for column_names, _ in columns for name in column_names)
    if names != FEATURE_NAMES:
        raise RuntimeError(
            "the ONNX feature graph no longer mirrors features.py: it produces "
            f"{names}, features.py defines {FEATURE_NAMES}"
        )
    column_tensors = [tensor for _, tensor in columns]
    concat = helper.make_node("Concat", column_tensors, [FEATURES_OUTPUT], name=FEATURES_OUTPUT, axis=1)
    b.nodes.append(concat)
    imu_spec = helper.make_tensor_value_info(
        IMU_INPUT,
        TensorProto.FLOAT,
        [BATCH_DIM, len(IMU_CHANNELS), SAMPLES_PER_WINDOW],
        "IMU window, channels ax, ay, az (m/s^2), gx, gy, gz (rad/s), 50 Hz",
    )
    speed_spec = helper.make_tensor_value_info(
        SPEED_INPUT, TensorProto.FLOAT, [BATCH_DIM], "GPS speed at the trigger (km/h)"
    )
    features_spec = helper.make_tensor_value_info(
        FEATURES_OUTPUT,
        TensorProto.FLOAT,
        [BATCH_DIM, len(FEATURE_NAMES)],
        "Window features, columns in order: " + ", ".join(FEATURE_NAMES),
    )
    graph = helper.make_graph(
        b.nodes,
        "fleetml_window_features",
        [imu_spec, speed_spec],
        [features_spec],
        initializer=b.initializers,
    )
    opset_imports = [helper.make_opsetid("", opset)]
    model = helper.make_model(
        graph,
        opset_imports=opset_imports,
        ir_version=helper.find_min_ir_version_for(opset_imports),
        producer_name="fleetml",
        doc_string="fleetml harsh-event window features (mirror of edge_packaging/features.py)",
    )
    helper.set_model_props(model, {FEATURE_NAMES_METADATA_KEY: json.dumps(list(FEATURE_NAMES))})
    onnx.checker.check_model(model, full_check=True)
    return model
