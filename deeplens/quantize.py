"""INT8 post-training quantisation with NNCF, calibrated on the model's own validation images.

The calibration batches are prepared exactly as serving prepares images (serve/preprocess.py), so the
activation ranges NNCF measures are the ones the runtime will see. One image per batch: the exports
have a dynamic batch dimension, NNCF calibrates them one sample at a time.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from magiccards.serve.preprocess import network_input

from magiccards.model_dir import ModelDir

from .validation import Sample

CALIBRATION_IMAGES = 300  # NNCF's own default subset size


def calibration_batches(model: ModelDir, samples: list[Sample]) -> list[np.ndarray]:
    """(1, C, H, W) float32 inputs of the calibration images."""
    return [network_input(s.image, model.task, model.input_shape, model.mean, model.std)[None] for s in samples]


def _folded(source: Path, scratch: Path) -> Path:
    """The ONNX file with each BatchNorm folded into its convolution (onnxruntime's basic, hardware-neutral
    graph optimisations): the convolutions get biases, which NNCF's bias correction then adjusts; with the
    BatchNorms left apart, INT8 lost several points of top-1 agreement on a small ResNet."""
    import onnxruntime as ort

    scratch.mkdir(parents=True, exist_ok=True)
    folded = scratch / "folded.onnx"
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(folded)
    options.log_severity_level = 3
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    return folded


def quantize_onnx(source: Path, target: Path, model: ModelDir, samples: list[Sample]) -> None:
    """Write the INT8 version of the ONNX file `source` to `target`, calibrated on `samples`."""
    from magiccards.telemetry import opt_out

    opt_out()  # before NNCF is imported: it starts OpenVINO's telemetry sender
    import nncf
    import onnx

    logging.getLogger("nncf").setLevel(logging.WARNING)
    network = onnx.load(str(_folded(source, target.parent)))
    input_name = network.graph.input[0].name
    batches = calibration_batches(model, samples)
    quantized = nncf.quantize(network, nncf.Dataset(batches, lambda batch: {input_name: batch}),
                              subset_size=len(batches), preset=nncf.QuantizationPreset.MIXED)
    onnx.save(quantized, str(target))
    (target.parent / "folded.onnx").unlink(missing_ok=True)
