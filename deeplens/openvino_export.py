"""ONNX → OpenVINO IR (`openvino.convert_model`), in FP32 or with FP16 weights.

OpenVINO's MXNet front end was removed in 2024.0: the ONNX file is the route. `save_model` halves the
weights unless told not to, so FP32 says so explicitly.
"""
from __future__ import annotations

from pathlib import Path

from magiccards.telemetry import openvino

from .graph import ExportError


def read_onnx(onnx_file: Path):
    """The OpenVINO model of an ONNX file (OpenVINO's usage telemetry turned off first: telemetry.py)."""
    ov = openvino()
    try:
        model = ov.convert_model(str(onnx_file))
    except Exception as e:  # OpenVINO's conversion errors are its own C++ types
        raise ExportError(f"OpenVINO cannot convert {onnx_file}: {str(e).strip().splitlines()[-1][:300]}") from None
    _stable_top_k(model)
    return model


STABLE_TOP_K_MAX = 4096  # OpenVINO's stable TopK is slow on long inputs (13 ms for 9,000 scores here)


def _stable_top_k(model) -> None:
    """ONNX's TopK puts equal values in index order (the detection tail relies on it: onnx_tail.py); OpenVINO's
    converted TopK does not unless told (its `stable` attribute, off as converted). Set on the TopKs over at most
    STABLE_TOP_K_MAX values (the tail sorts its candidates stably there; its first TopK over every score is left
    fast)."""
    for op in model.get_ordered_ops():
        if op.get_type_name() != "TopK" or "stable" not in op.get_attributes():
            continue
        shape = op.get_input_partial_shape(0)
        axis = op.get_attributes()["axis"] % shape.rank.get_length()
        if shape[axis].is_static and shape[axis].get_length() <= STABLE_TOP_K_MAX:
            op.set_attribute("stable", True)


def save_ir(ov_model, xml_file: Path, fp16: bool) -> None:
    """Write model.xml + model.bin; `fp16` stores the weights in half precision."""
    ov = openvino()

    xml_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        ov.save_model(ov_model, str(xml_file), compress_to_fp16=fp16)
    except RuntimeError as e:  # OpenVINO's own error for a file it cannot write (a full disk...)
        raise ExportError(f"OpenVINO cannot write {xml_file}: {str(e).strip().splitlines()[-1][:300]}") from None
