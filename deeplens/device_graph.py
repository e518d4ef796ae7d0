"""The graph AWS DeepLens runs: only the MXNet layers its Model Optimizer accepts, input as frames arrive.

DeepLens converts an MXNet symbol/params pair with the Intel Model Optimizer on the device and runs it
on frames that arrive as BGR uint8. The graph built here is therefore:

- input: BGR pixels 0..255, NCHW. A 1x1 Convolution (a supported layer) reorders the channels to RGB
  and applies the model card's normalisation, (pixel / 255 - mean) / std, exactly: the Lambda only
  resizes (and centre-crops for a classifier) before `doInference`.
- classification: the trained network, then `SoftmaxActivation` (probabilities, as `parseResult`
  'classification' reads them).
- detection: GluonCV's SSD ends in box_decode / box_nms, which the Model Optimizer cannot read. The
  same features and heads are kept (cut where deeplens/graph.py cuts them), then, as apache/mxnet's
  example/ssd built SSDs for DeepLens: class logits reshaped to (batch, classes + 1, anchors) through
  `SoftmaxActivation(mode='channel')` (background first, as GluonCV's predictor has it), box offsets
  flattened, anchors from `_contrib_MultiBoxPrior` on each feature map with the sizes, ratios, steps
  and offsets read back from the trained SSD's own anchors (checked equal), and
  `_contrib_MultiBoxDetection` with GluonCV's variances (its box decoder's stds), score threshold,
  NMS threshold and top-k. Rows: [class, score, xmin, ymin, xmax, ymax], corners normalised.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np

from magiccards.model_dir import ModelDir

from .graph import ExportError, Graph, detection_heads, load_graph, run

# The MXNet layers DeepLens supports (AWS DeepLens developer guide, "Supported MXNet layers").
SUPPORTED_OPS = frozenset({
    "Activation", "BatchNorm", "Concat", "_contrib_MultiBoxDetection", "_contrib_MultiBoxPrior", "Convolution",
    "Deconvolution", "elemwise_add", "Flatten", "FullyConnected", "InputLayer", "L2Norm", "LRN", "Pooling",
    "Reshape", "ScaleShift", "SoftmaxActivation", "SoftmaxOutput", "transpose", "UpSampling", "_mul", "_Plus",
})
MAX_SIDE = 1024  # mo.optimize's limit on input width and height
INPUT_LAYER = "deeplens_input"


@dataclasses.dataclass
class DeviceGraph:
    """A DeepLens-ready symbol with its parameters."""

    symbol: object
    arg_params: dict
    aux_params: dict
    input_shape: tuple[int, int, int, int]
    task: str
    detection: dict | None = None  # MultiBoxDetection's settings, for deeplens.json


def unsupported_ops(symbol) -> dict[str, int]:
    """{op: count} of the layers of `symbol` that DeepLens does not support."""
    nodes = json.loads(symbol.tojson())["nodes"]
    found: dict[str, int] = {}
    for node in nodes:
        if node["op"] != "null" and node["op"] not in SUPPORTED_OPS:
            found[node["op"]] = found.get(node["op"], 0) + 1
    return found


def _input_layer(mx, mean, std):
    """BGR 0..255 in, the normalised RGB the network was trained on out: one exact 1x1 convolution."""
    weight = np.zeros((3, 3, 1, 1), np.float32)
    bias = np.zeros(3, np.float32)
    for out in range(3):  # out is R, G, B; the frame's channel 2 - out holds it
        weight[out, 2 - out, 0, 0] = 1.0 / (255.0 * std[out])
        bias[out] = -mean[out] / std[out]
    data = mx.sym.var("data")
    layer = mx.sym.Convolution(data=data, kernel=(1, 1), num_filter=3, name=INPUT_LAYER)
    return layer, {f"{INPUT_LAYER}_weight": mx.nd.array(weight), f"{INPUT_LAYER}_bias": mx.nd.array(bias)}


def _anchor_layers(graph: Graph):
    """[(feature map symbol, anchors (H, W, k, 4) in centre format, input pixels)] of each GluonCV
    SSDAnchorGenerator (a constant sliced like its feature map)."""
    nodes = json.loads(graph.symbol.tojson())["nodes"]
    internals = graph.symbol.get_internals()
    layers = []
    for node in nodes:
        if node["op"] != "slice_like" or "anchorgenerator" not in node["name"]:
            continue
        zeros = nodes[node["inputs"][1][0]]  # feature * 0
        feature = nodes[zeros["inputs"][0][0]]["name"]
        values = run(graph, internals[node["name"] + "_output"], np.zeros(graph.input_shape, np.float32))[0]
        _, _, h, w, k4 = values.shape
        layers.append((internals[feature + "_output"], values.reshape(h, w, k4 // 4, 4)))
    if not layers:
        raise ExportError("no SSD anchor generators found in the detection graph (a GluonCV SSD expected)")
    return layers


def prior_settings(anchors: np.ndarray, input_hw: tuple[int, int]) -> dict:
    """MultiBoxPrior's sizes, ratios, steps and offsets (normalised) that give `anchors` (H, W, k, 4: cx,
    cy, w, h in pixels, GluonCV's order: (s1, 1), (sqrt(s1 s2), 1), (s1, r) for the other ratios)."""
    in_h, in_w = input_hw
    h, w, k, _ = anchors.shape
    if k < 2:
        raise ExportError(f"an SSD anchor layer with {k} anchor(s) per cell: expected two sizes and ratios")
    cx0, cy0 = float(anchors[0, 0, 0, 0]), float(anchors[0, 0, 0, 1])
    step_x = float(anchors[0, 1, 0, 0] - cx0) if w > 1 else cx0 / 0.5
    step_y = float(anchors[1, 0, 0, 1] - cy0) if h > 1 else cy0 / 0.5
    sizes = [float(anchors[0, 0, 0, 3]) / in_h, float(anchors[0, 0, 1, 3]) / in_h]
    ratios = [1.0] + [float(anchors[0, 0, j, 2] / anchors[0, 0, j, 3]) for j in range(2, k)]
    return {"sizes": tuple(round(s, 7) for s in sizes), "ratios": tuple(round(r, 7) for r in ratios),
            "steps": (step_y / in_h, step_x / in_w), "offsets": (cy0 / step_y, cx0 / step_x)}


def _corners(anchors: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    in_h, in_w = input_hw
    cx, cy, w, h = (anchors[..., i] for i in range(4))
    return np.stack([(cx - w / 2) / in_w, (cy - h / 2) / in_h, (cx + w / 2) / in_w, (cy + h / 2) / in_h], -1)


def _detection(mx, graph: Graph):
    heads, _, rules = detection_heads(graph)
    nodes = json.loads(graph.symbol.tojson())["nodes"]
    softmax = [n for n in nodes if n["op"] == "softmax"][-1]
    internals = graph.symbol.get_internals()
    logits = internals[nodes[softmax["inputs"][0][0]]["name"] + "_output"]  # (B, anchors, classes + 1)
    offsets = heads[1]  # (B, anchors, 4)
    cls_prob = mx.sym.SoftmaxActivation(mx.sym.transpose(logits, axes=(0, 2, 1)), mode="channel", name="cls_prob")
    loc = mx.sym.Flatten(offsets, name="loc_preds")
    in_hw = graph.input_shape[2:]
    priors, settings = [], []
    for i, (feature, anchors) in enumerate(_anchor_layers(graph)):
        s = prior_settings(anchors, in_hw)
        prior = mx.sym.contrib.MultiBoxPrior(feature, sizes=s["sizes"], ratios=s["ratios"], steps=s["steps"],
                                             offsets=s["offsets"], clip=False, name=f"anchors{i}")
        priors.append((mx.sym.Flatten(prior), anchors))
        settings.append(s)
    anchor_boxes = mx.sym.Reshape(mx.sym.Concat(*[p for p, _ in priors], dim=1), shape=(0, -1, 4), name="anchors")
    detection = {"threshold": rules.class_thresh, "nms_threshold": rules.overlap_thresh,
                 "force_suppress": rules.force_suppress, "variances": tuple(rules.std),
                 "nms_topk": rules.topk if rules.topk < (1 << 30) else -1}
    out = mx.sym.contrib.MultiBoxDetection(cls_prob, loc, anchor_boxes, clip=True, background_id=0,
                                           name="detection", **detection)
    _check_anchors(graph, anchor_boxes, [a for _, a in priors], in_hw)
    return out, dict(detection, anchor_layers=settings)


def _check_anchors(graph: Graph, anchor_boxes, wanted: list[np.ndarray], in_hw) -> None:
    """MultiBoxPrior's anchors must be the trained SSD's: refuse a graph whose anchors differ."""
    got = run(graph, anchor_boxes, np.zeros(graph.input_shape, np.float32))[0].reshape(-1, 4)
    want = np.concatenate([_corners(a, in_hw).reshape(-1, 4) for a in wanted])
    if got.shape != want.shape or np.abs(got - want).max() > 1e-4:
        worst = np.abs(got - want).max() if got.shape == want.shape else f"{got.shape} vs {want.shape}"
        raise ExportError(f"MultiBoxPrior cannot reproduce the SSD's anchors (largest difference {worst}); "
                          "this anchor layout is not one DeepLens can run")


def build(model: ModelDir) -> DeviceGraph:
    """The DeepLens graph of `model`, refused with the ops named when it would hold unsupported layers."""
    import mxnet as mx

    c, h, w = model.input_shape
    if max(h, w) > MAX_SIDE:
        raise ExportError(f"the model's input is {w} x {h}: DeepLens's Model Optimizer takes at most "
                          f"{MAX_SIDE} x {MAX_SIDE}; train with a smaller image_shape")
    graph = load_graph(model)
    head, params = _input_layer(mx, model.mean, model.std)
    detection = None
    if model.task == "classification":
        body = mx.sym.SoftmaxActivation(graph.symbol, name="prob")
    else:
        body, detection = _detection(mx, graph)
    symbol = body(data=head)
    bad = unsupported_ops(symbol)
    if bad:
        listed = ", ".join(f"{op} (x{n})" for op, n in sorted(bad.items()))
        hint = ("resnet18_v1 / resnet50_v1 / mobilenet1.0 classify with supported layers only"
                if model.task == "classification" else "ssd_300_mobilenet0.25 and ssd_512_resnet50_v1 do")
        raise ExportError(f"{model.network or 'this network'} uses layers DeepLens does not support: {listed}; "
                          f"{hint}")
    args, aux = set(symbol.list_arguments()), set(symbol.list_auxiliary_states())
    arg_params = {k: v for k, v in {**graph.arg_params, **params}.items() if k in args}
    aux_params = {k: v for k, v in graph.aux_params.items() if k in aux}
    missing = sorted(args - set(arg_params) - {"data"})
    if missing:
        raise ExportError(f"the DeepLens graph needs parameters the model does not have: {', '.join(missing[:5])}")
    return DeviceGraph(symbol, arg_params, aux_params, (1, c, h, w), model.task, detection)


def run_device(device: DeviceGraph, batch_bgr: np.ndarray) -> np.ndarray:
    """The device graph's output on a BGR 0..255 NCHW batch, in MXNet (the reference for the IR)."""
    graph = Graph(device.symbol, device.arg_params, device.aux_params, device.input_shape)
    return run(graph, device.symbol, batch_bgr.astype(np.float32))[0]
