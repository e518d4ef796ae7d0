"""The detector's tail in ONNX ops (deeplens/onnx_tail.py) answers what the NumPy tail answers (MXNet's rules),
in ONNX Runtime and in OpenVINO, for every rule the exporter reads from a graph."""
import dataclasses

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from magiccards.deeplens.onnx_tail import append_tail
from magiccards.serve.detection_decode import DecodeRules, decode
from onnx import TensorProto, helper

from magiccards.model_dir import TAIL_OUTPUTS


def _heads(path, classes):
    """An ONNX graph whose 'heads' are its inputs: probabilities (N, A, C+1) and offsets (N, A, 4)."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["p"], ["probabilities"]), helper.make_node("Identity", ["o"], ["offsets"])],
        "heads",
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["n", "a", classes + 1]),
         helper.make_tensor_value_info("o", TensorProto.FLOAT, ["n", "a", 4])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("offsets", TensorProto.FLOAT, None)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def _inputs(rng, batch, count, classes):
    """Peaked class probabilities (a few confident anchors, many near zero) and offsets, on a 300 px grid of
    anchors that overlap (so suppression has work), with ties among the scores."""
    logits = rng.normal(0, 2, (batch, count, classes + 1)).astype(np.float32)
    logits[:, :, 0] += 3  # mostly background
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    probabilities[:, :7] = probabilities[:, 7:14]  # equal scores on other anchors
    offsets = rng.normal(0, 1, (batch, count, 4)).astype(np.float32)
    centres = rng.uniform(20, 280, (count, 2))
    sizes = rng.uniform(20, 120, (count, 2))
    anchors = np.concatenate([centres, sizes], 1).astype(np.float32)
    return probabilities.astype(np.float32), offsets, anchors


RULES = [DecodeRules(),
         DecodeRules(topk=50, keep=20, overlap_thresh=0.3),
         DecodeRules(force_suppress=True, clip=0.5),
         DecodeRules(best_class_only=True, class_thresh=0.05, valid_thresh=0.02),
         DecodeRules(topk=60, keep=100)]  # fewer candidates than kept rows: the rest is padding


@pytest.mark.parametrize("rules", RULES, ids=["gluoncv", "small-topk", "force-suppress", "best-class", "padded"])
def test_the_graphs_tail_answers_as_the_numpy_tail(tmp_path, rules):
    from magiccards.deeplens.openvino_export import read_onnx
    from magiccards.telemetry import openvino

    rng = np.random.default_rng(1)
    classes, count = 3, 500
    probabilities, offsets, anchors = _inputs(rng, 3, count, classes)
    paths = {}
    for ties_in_order in (True, False):  # ONNX's own TopK order (ONNX Runtime), counted (OpenVINO)
        paths[ties_in_order] = tmp_path / f"model-{ties_in_order}.onnx"
        _heads(paths[ties_in_order], classes)
        append_tail(paths[ties_in_order], anchors, rules, classes, ties_in_order=ties_in_order)
        model = onnx.load(str(paths[ties_in_order]))
        assert tuple(o.name for o in model.graph.output) == TAIL_OUTPUTS
    want = decode(probabilities, offsets, anchors, rules)
    assert (want[0] >= 0).sum() > 20  # there is something to compare
    sessions = {t: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for t, p in paths.items()}
    compiled = openvino().Core().compile_model(read_onnx(paths[False]), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    for runtime, run in (("onnxruntime", lambda p, o: sessions[True].run(None, {"p": p, "o": o})),
                         ("onnxruntime, counted", lambda p, o: sessions[False].run(None, {"p": p, "o": o})),
                         ("openvino", lambda p, o: [np.asarray(v) for v in compiled({"p": p, "o": o}).values()])):
        for n in (1, 3):  # one image, and a batch (each image its own rows)
            got = run(probabilities[:n], offsets[:n])
            for name, w, g in zip(TAIL_OUTPUTS, want, got):
                assert g.shape == w[:n].shape, (runtime, name)
                np.testing.assert_allclose(g, w[:n], atol=1e-3, err_msg=f"{runtime} {name} {rules}")


def test_a_tail_is_appended_once(tmp_path):
    rng = np.random.default_rng(2)
    _, _, anchors = _inputs(rng, 1, 100, 2)
    path = tmp_path / "model.onnx"
    _heads(path, 2)
    append_tail(path, anchors, DecodeRules(), 2)
    nodes = len(onnx.load(str(path)).graph.node)
    append_tail(path, anchors, dataclasses.replace(DecodeRules(), keep=5), 2)
    assert len(onnx.load(str(path)).graph.node) == nodes
