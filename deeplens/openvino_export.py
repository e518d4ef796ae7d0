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
        return ov.convert_model(str(onnx_file))
    except Exception as e:  # OpenVINO's conversion errors are its own C++ types
        raise ExportError(f"OpenVINO cannot convert {onnx_file}: {str(e).strip().splitlines()[-1][:300]}") from None


def save_ir(ov_model, xml_file: Path, fp16: bool) -> None:
    """Write model.xml + model.bin; `fp16` stores the weights in half precision."""
    ov = openvino()

    xml_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        ov.save_model(ov_model, str(xml_file), compress_to_fp16=fp16)
    except RuntimeError as e:  # OpenVINO's own error for a file it cannot write (a full disk...)
        raise ExportError(f"OpenVINO cannot write {xml_file}: {str(e).strip().splitlines()[-1][:300]}") from None
