"""Dynamic int8 quantization of an edge model, kept only when it is measured to help.

onnxruntime's `quantize_dynamic` turns float weights of MatMul/Gemm-style operators into int8 (4x smaller
weights: a small MLP edge model measured 0.72x overall). Tree ensembles hold thresholds and leaves in one
ai.onnx.ml operator, which it leaves alone: for them the quantized file is no smaller. So the float
model stays unless the quantized one is strictly smaller AND passes the caller's `check` (parity or
accuracy on held-out windows); the outcome says what was measured either way.
"""

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edge_packaging.export import deduplicate_opset_imports

if TYPE_CHECKING:
    import onnx


@dataclass(frozen=True)
class QuantizationOutcome:
    """The model to ship (`model_bytes`), whether it is the quantized one, and what was measured."""

    model_bytes: bytes
    quantized: bool
    original_bytes: int
    quantized_bytes: int | None
    """Size of the quantized model, or None when quantization did not produce one."""
    reason: str


def _op_types(model: "onnx.ModelProto") -> set[str]:
    return {node.op_type for node in model.graph.node}


def quantize_if_it_helps(model: "onnx.ModelProto", check: Callable[[bytes], bool]) -> QuantizationOutcome:
    """Try dynamic int8 quantization of `model`; return the quantized bytes only if they are smaller
    than the float model and `check(quantized_bytes)` is true, else the float bytes, with the reason."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    float_bytes = model.SerializeToString()
    original = len(float_bytes)
    try:
        # quantize_dynamic refuses a model that lists the default domain twice (skl2onnx output does).
        prepared = onnx.ModelProto()
        prepared.CopyFrom(model)
        deduplicate_opset_imports(prepared)
        with tempfile.TemporaryDirectory(prefix="fleetml-quantize-") as workdir:
            output = Path(workdir) / "model.int8.onnx"
            quantize_dynamic(prepared, output, weight_type=QuantType.QInt8)
            quantized_bytes = output.read_bytes()
    except Exception as error:  # any failure of the quantizer means: ship the float model
        failure = f"{type(error).__name__}: {error}"
        reason = f"kept float model ({original} bytes): quantize_dynamic failed: {failure}"
        return QuantizationOutcome(float_bytes, False, original, None, reason)

    quantized = len(quantized_bytes)
    sizes = f"float {original} bytes, int8 {quantized} bytes ({quantized / original:.2f}x)"
    if quantized >= original:
        reason = (
            f"kept float model: quantization does not shrink it ({sizes}); quantize_dynamic rewrites "
            "MatMul/Gemm-style weight initializers, and this model keeps its parameters elsewhere "
            "(tree ensembles and other ai.onnx.ml operators hold them as attributes)"
        )
        return QuantizationOutcome(float_bytes, False, original, quantized, reason)
    if not check(quantized_bytes):
        reason = f"kept float model: the int8 model is smaller ({sizes}) but failed the check"
        return QuantizationOutcome(float_bytes, False, original, quantized, reason)
    added_ops = _op_types(onnx.load_model_from_string(quantized_bytes)) - _op_types(model)
    added = ", ".join(sorted(added_ops)) or "none"
    reason = f"quantized: {sizes}, and it passed the check; operators added: {added}"
    return QuantizationOutcome(quantized_bytes, True, original, quantized, reason)
