"""MXNet graph → ONNX through `mx.onnx`: the whole classifier, or a detector's heads (graph.py).

The file has a dynamic batch dimension, its weights as initializers only (MXNet's exporter also lists
them among the inputs, which keeps onnxruntime from folding constants), and is checked by onnx.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path

import numpy as np

from magiccards.files import atomic_path, write_text_atomic
from magiccards.model_dir import ANCHORS, DECODE_RULES, ModelDir

from . import onnx_tail
from .graph import ExportError, Graph, anchors, detection_heads


def _drop_initializer_inputs(path: Path) -> None:
    import onnx

    model = onnx.load(str(path))
    weights = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _export(graph: Graph, symbol, path: Path) -> None:
    import mxnet as mx

    path.parent.mkdir(parents=True, exist_ok=True)
    shape = graph.input_shape
    noise = io.StringIO()
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the exporter logs every op it converts
    try:
        with contextlib.redirect_stdout(noise):
            mx.onnx.export_model(symbol, graph.params_for(symbol), in_shapes=[shape], in_types=[np.float32],
                                 onnx_file_path=str(path), dynamic=True,
                                 dynamic_input_shapes=[(None, *shape[1:])])
    except AttributeError as e:  # "No conversion function registered for op type X yet."
        op = str(e).split("op type", 1)[-1].replace("yet.", "").strip() if "op type" in str(e) else str(e)
        raise ExportError(f"the graph cannot be exported to ONNX: MXNet's exporter has no conversion for the op "
                          f"{op}") from None
    except (NotImplementedError, ValueError, TypeError, KeyError) as e:
        raise ExportError(f"the graph cannot be exported to ONNX ({type(e).__name__}: {str(e)[:300]})") from None
    finally:
        root.setLevel(level)
    _drop_initializer_inputs(path)


def write_onnx(model: ModelDir, graph: Graph, path: Path) -> list[str]:
    """Write the FP32 ONNX file of `model` to `path`; returns the names of its outputs' meaning.

    A detector's export gets its anchors and decoding rules beside it (model.exports_dir)."""
    if model.task == "classification":
        _export(graph, graph.symbol, path)
        return ["class scores (logits)"]
    heads, anchors_symbol, rules = detection_heads(graph)
    _export(graph, heads, path)
    with atomic_path(model.exports_dir / ANCHORS) as tmp, open(tmp, "wb") as f:
        np.save(f, anchors(graph, anchors_symbol).astype(np.float32))
    write_text_atomic(model.exports_dir / DECODE_RULES, json.dumps(rules.as_json(), indent=1))
    return ["class probabilities (background first)", "box offsets"]


def append_tail(model: ModelDir, path: Path, for_openvino: bool = False) -> None:
    """End the detector's ONNX heads at `path` in box decoding and NMS (onnx_tail.py), from the anchors and rules
    `write_onnx` stored: the export then answers ids, scores and boxes, as the MXNet graph does. `for_openvino`:
    the file is read by OpenVINO, whose TopK leaves equal scores in no set order (onnx_tail.build_tail)."""
    from magiccards.serve.detection_decode import load_rules

    onnx_tail.append_tail(path, np.load(model.exports_dir / ANCHORS), load_rules(model.exports_dir / DECODE_RULES),
                          len(model.classes), ties_in_order=not for_openvino)


def to_fp16(source: Path, target: Path) -> None:
    """An FP16 copy of an ONNX file, with float32 inputs and outputs kept (the runtime casts inside)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    target.parent.mkdir(parents=True, exist_ok=True)
    half = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(half, str(target))
