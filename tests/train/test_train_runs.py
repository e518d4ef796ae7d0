"""Training through the real toolkit entry point (`train` with SAGEMAKER_TRAINING_MODULE), no Docker."""
import json
import re

import mxnet as mx
import numpy as np
import pytest
from magiccards.container.local_run import run_local
from magiccards.train.reporting import METRIC_DEFINITIONS
from PIL import Image

pytestmark = pytest.mark.slow

CLASSIFY = {"network": "resnet18_v1b", "image_shape": "3,64,64", "epochs": "10", "mini_batch_size": "16",
            "optimizer": "adam", "learning_rate": "0.002", "augmentation_type": "crop", "seed": "1"}


def _scrape(lines, task):
    """What SageMaker's MetricDefinitions would extract from the log."""
    found = {}
    for d in METRIC_DEFINITIONS[task]:
        found[d["Name"]] = [float(m.group(1)) for line in lines for m in [re.search(d["Regex"], line)] if m]
    return found


def test_classification_learns_and_exports(packed_cards, tmp_path):
    lines = []
    model_dir = run_local(packed_cards, tmp_path / "job", {**CLASSIFY, "precision_dtype": "float16"}, log=lines.append)
    assert "precision_dtype=float16 applies on GPUs only: training in float32 on the CPU" in lines
    metrics = _scrape(lines, "classification")
    assert len(metrics["validation:accuracy"]) == 10 and len(metrics["train:throughput"]) == 10
    assert max(metrics["validation:accuracy"]) >= 0.75, lines  # chance is 0.25
    assert metrics["train:loss"][-1] < metrics["train:loss"][0]
    # the model directory contract
    for name in ("image-classification-symbol.json", "image-classification-0000.params", "classes.txt",
                 "model-shapes.json", "hyperparams.json", "model-card.json"):
        assert (model_dir / name).is_file(), name
    card = json.loads((model_dir / "model-card.json").read_text())
    assert card["task"] == "classification" and card["network"] == "resnet18_v1b"
    assert card["input"]["shape"] == [1, 3, 64, 64] and card["dataset"] == {"train": 120, "validation": 40}
    assert card["metrics"]["validation_accuracy"] == pytest.approx(max(metrics["validation:accuracy"]), abs=1e-6)
    assert json.loads((model_dir / "model-shapes.json").read_text()) == [{"name": "data", "shape": [1, 3, 64, 64]}]
    assert json.loads((model_dir / "hyperparams.json").read_text())["epochs"] == "10"
    # the exported graph loads and predicts like the validation run
    net = mx.gluon.SymbolBlock.imports(str(model_dir / "image-classification-symbol.json"), ["data"],
                                       str(model_dir / "image-classification-0000.params"))
    assert net(mx.nd.zeros((2, 3, 64, 64))).shape == (2, 4)
    # reports in output/data
    out = tmp_path / "job" / "output" / "data"
    assert len(json.loads((out / "metrics.json").read_text())) == 10
    for png in ("curves.png", "confusion-matrix.png"):
        assert Image.open(out / png).format == "PNG"
    per_class = json.loads((out / "per-class-accuracy.json").read_text())
    assert set(per_class) == set((packed_cards / "classes.txt").read_text().split())
    assert (tmp_path / "job" / "output" / "success").is_file()


def test_detection_learns_and_exports(packed_scenes, tmp_path):
    lines = []
    hp = {"network": "ssd_300_mobilenet0.25", "image_shape": "128", "epochs": "12", "mini_batch_size": "16",
          "optimizer": "adam", "learning_rate": "0.002", "use_pretrained_model": "0", "seed": "1",
          "precision_dtype": "float16"}
    model_dir = run_local(packed_scenes, tmp_path / "job", hp, log=lines.append)
    assert "precision_dtype=float16 applies to classification only: the SSD trains in float32" in lines
    metrics = _scrape(lines, "detection")
    assert len(metrics["validation:mAP"]) == 12
    ce = metrics["train:cross_entropy"]
    assert min(ce[-3:]) < 0.75 * ce[0], ce  # falls: the last epochs are well under the first
    # from scratch (no ImageNet base here) SSD learns slowly: an untrained one scores 0.000x
    assert max(metrics["validation:mAP"]) > 0.01, lines
    assert any("#quality_metric: host=algo-1, epoch=11, validation mAP <score>=(" in line for line in lines)
    net = mx.gluon.SymbolBlock.imports(str(model_dir / "model_algo_1-symbol.json"), ["data"],
                                       str(model_dir / "model_algo_1-0000.params"))
    ids, scores, boxes = net(mx.nd.zeros((1, 3, 128, 128)))
    assert boxes.shape[-1] == 4 and ids.shape[:2] == scores.shape[:2]
    card = json.loads((model_dir / "model-card.json").read_text())
    assert card["task"] == "detection" and card["classes"] == (packed_scenes / "classes.txt").read_text().split()
    per_class = json.loads((tmp_path / "job" / "output" / "data" / "per-class-ap.json").read_text())
    assert set(per_class) == set(card["classes"])


def test_detection_is_deterministic_for_a_seed_whatever_the_loader_processes(packed_scenes, tmp_path):
    """Each item's SSD augmentation is seeded from (seed, epoch, index), not from the process drawing it."""
    hp = {"network": "ssd_300_mobilenet0.25", "image_shape": "128", "epochs": "2", "mini_batch_size": "16",
          "optimizer": "adam", "learning_rate": "0.002", "use_pretrained_model": "0", "seed": "5"}
    weights = []
    for workers in ("1", "2"):
        model_dir = run_local(packed_scenes, tmp_path / workers, {**hp, "num_workers": workers}, log=lambda line: None)
        weights.append(mx.nd.load(str(model_dir / "model_algo_1-0000.params")))
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        np.testing.assert_allclose(weights[1][name].asnumpy(), weights[0][name].asnumpy(), rtol=1e-4, atol=1e-5,
                                   err_msg=name)


def test_built_in_classification_options(packed_cards, tmp_path):
    """The built-in algorithm's other knobs do what their names say (each visible in the log or the model)."""
    lines = []
    hp = {"network": "resnet18_v1b", "image_shape": "3,32,32", "resize": "40", "epochs": "2", "mini_batch_size": "16",
          "optimizer": "sgd", "learning_rate": "0.05", "momentum": "0.8", "lr_scheduler_step": "1",
          "lr_scheduler_factor": "0.5", "warmup_epochs": "1", "top_k": "2", "checkpoint_frequency": "1",
          "use_weighted_loss": "1", "augmentation_type": "crop_color_transform", "seed": "2"}
    model_dir = run_local(packed_cards, tmp_path / "job", hp, log=lines.append)
    top2 = [float(m.group(1)) for line in lines for m in [re.search(r"Validation-top_k_accuracy=([0-9.]+)", line)] if m]
    top1 = _scrape(lines, "classification")["validation:accuracy"]
    assert len(top2) == len(top1) == 2 and all(t2 >= t1 for t1, t2 in zip(top1, top2))
    for epoch in (1, 2):  # checkpoint_frequency=1: the model keeps every epoch's export, like the built-in
        assert (model_dir / f"image-classification-{epoch:04d}.params").is_file()
    assert (model_dir / "image-classification-0000.params").is_file()
