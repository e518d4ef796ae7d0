"""The MXNet graph of a model directory, made ready for an exporter.

Two things stand between a trained GluonCV graph and a faithful ONNX file:

- BatchNorm nodes built with MXNet's symbol defaults (GluonCV's SSD feature expansion layers) carry
  `fix_gamma=True`: MXNet ignores their gamma (it computes with 1), but the stored gamma drifts under
  weight decay (0.998 after a short run) and the ONNX exporter uses it. That shifted every box of the
  smaller feature maps; with an untrained gamma it gave NaN. `load_graph` sets those gammas to 1.
- The detection graph ends in box decoding and per-class NMS, which ONNX cannot express per class and
  OpenVINO cannot compile; `detection_heads` cuts the graph before them and reads the tail's rules
  (serve/detection_decode.py replays it in NumPy), and `anchors` computes the constant anchors.
"""
from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
from magiccards.serve.detection_decode import DecodeRules

from magiccards.errors import UserError
from magiccards.model_dir import ModelDir


class ExportError(UserError):
    """A model that cannot be exported as asked."""


@dataclasses.dataclass
class Graph:
    symbol: object  # mx.sym.Symbol
    arg_params: dict
    aux_params: dict
    input_shape: tuple[int, int, int, int]

    def params_for(self, symbol) -> dict:
        """The parameters `symbol` uses (an exporter refuses extra ones)."""
        args, aux = set(symbol.list_arguments()), set(symbol.list_auxiliary_states())
        return {**{k: v for k, v in self.arg_params.items() if k in args},
                **{k: v for k, v in self.aux_params.items() if k in aux}}


def _true(value) -> bool:
    return str(value).strip().lower() in ("true", "1")


def load_graph(model: ModelDir) -> Graph:
    """The model directory's symbol and parameters, with fixed gammas set to the 1 MXNet computes with."""
    import mxnet as mx

    try:
        symbol = mx.sym.load(str(model.symbol_file))
    except mx.base.MXNetError as e:
        raise ExportError(f"{model.symbol_file} cannot be loaded by MXNet ({_last_line(e)})") from None
    try:
        loaded = mx.nd.load(str(model.params_file))
    except mx.base.MXNetError as e:
        raise ExportError(f"{model.params_file} cannot be loaded by MXNet (cut short or not parameters: "
                          f"{_last_line(e)})") from None
    arg = {k.split(":", 1)[1]: v for k, v in loaded.items() if k.startswith("arg:")}
    aux = {k.split(":", 1)[1]: v for k, v in loaded.items() if k.startswith("aux:")}
    if not arg and not aux:  # saved by gluon's export without prefixes
        names = set(symbol.list_auxiliary_states())
        arg = {k: v for k, v in loaded.items() if k not in names}
        aux = {k: v for k, v in loaded.items() if k in names}
    nodes = json.loads(symbol.tojson())["nodes"]
    for node in nodes:
        if node["op"] == "BatchNorm" and _true(node.get("attrs", {}).get("fix_gamma", "True")):
            gamma = nodes[node["inputs"][1][0]]["name"]
            if gamma in arg:
                arg[gamma] = mx.nd.ones_like(arg[gamma])
    c, h, w = model.input_shape
    return Graph(symbol, arg, aux, (1, c, h, w))


def _last_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:200]


def _nodes(symbol) -> list[dict]:
    return json.loads(symbol.tojson())["nodes"]


def detection_heads(graph: Graph):
    """(heads, anchors, rules): the graph up to [class probabilities, box offsets], the anchors' symbol,
    and the DecodeRules of the tail (box_decode, the per-class decoder, box_nms, the final slice)."""
    import mxnet as mx

    nodes = _nodes(graph.symbol)
    by_op = lambda op: [n for n in nodes if n["op"] == op]  # noqa: E731
    decoders, nms = by_op("_contrib_box_decode"), by_op("_contrib_box_nms")
    softmaxes = [n for n in by_op("softmax") + by_op("SoftmaxActivation")]
    if len(decoders) != 1 or len(nms) != 1 or not softmaxes:
        raise ExportError("the detection graph is not a GluonCV SSD (one box_decode, one softmax and one box_nms "
                          f"expected; found {len(decoders)}, {len(softmaxes)}, {len(nms)})")
    decoder, suppress = decoders[0], nms[0]
    offsets, anchors = (nodes[i[0]]["name"] for i in decoder["inputs"][:2])
    internals = graph.symbol.get_internals()
    heads = mx.sym.Group([internals[softmaxes[-1]["name"] + "_output"], internals[offsets + "_output"]])
    d, s = decoder.get("attrs", {}), suppress.get("attrs", {})
    if d.get("format", "center") != "center":
        raise ExportError(f"box_decode format {d.get('format')!r} is not supported (center expected)")
    class_thresh = [float(n["attrs"]["scalar"]) for n in by_op("_greater_scalar") if "multiperclass" in n["name"]]
    keep = [int(n["attrs"]["end"]) for n in by_op("slice_axis")
            if n["inputs"] and nodes[n["inputs"][0][0]]["name"] == suppress["name"] and n["attrs"].get("axis") == "1"]
    rules = DecodeRules(
        std=tuple(float(d.get(f"std{i}", default)) for i, default in enumerate((0.1, 0.1, 0.2, 0.2))),
        clip=float(d.get("clip", -1)), class_thresh=class_thresh[0] if class_thresh else 0.01,
        overlap_thresh=float(s.get("overlap_thresh", 0.5)), valid_thresh=float(s.get("valid_thresh", 0)),
        topk=int(s.get("topk", -1)) if int(s.get("topk", -1)) > 0 else 1 << 30,
        keep=keep[0] if keep else 100, force_suppress=_true(s.get("force_suppress", "False")))
    return heads, internals[anchors + "_output"], rules


def run(graph: Graph, symbol, batch: np.ndarray) -> list[np.ndarray]:
    """Outputs of `symbol` (a part of the graph) on `batch`, in MXNet through Gluon, as training and
    serving run it. (A symbolic Module bound to the same graph gives other anchors for GluonCV's
    slice_like anchor maps, boxes off by up to 112 px: it is not the reference.)"""
    import mxnet as mx

    with warnings.catch_warnings():  # "cannot decide type for data": it is float32, given at the first call
        warnings.simplefilter("ignore")
        block = mx.gluon.SymbolBlock(symbol, mx.sym.var("data"))
    arrays = graph.params_for(symbol)
    for name, param in block.collect_params().items():
        param._load_init(arrays[name], mx.cpu())
    outputs = block(mx.nd.array(batch))
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return [o.asnumpy() for o in outputs]


def anchors(graph: Graph, anchors_symbol) -> np.ndarray:
    """The anchors (A, 4) in centre format, input pixels: a constant of the graph at its input size."""
    return run(graph, anchors_symbol, np.zeros(graph.input_shape, np.float32))[0].reshape(-1, 4)
