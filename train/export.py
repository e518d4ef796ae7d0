"""The model directory: the one contract between training and everything downstream.

    <prefix>-symbol.json, <prefix>-0000.params   the inference graph (mx.gluon.SymbolBlock.imports)
    classes.txt                                   class names, line number = class index
    model-shapes.json                             [{"name": "data", "shape": [1, 3, H, W]}]
    hyperparams.json                              the job's hyperparameters (strings, as SageMaker passes them)
    model-card.json                               task, network, input, normalisation, classes, metrics, data sizes

The prefixes are the built-in algorithms' names: `image-classification` and `model_algo_1` (detection).
"""
from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import mxnet as mx

from .data.samples import read_classes, write_classes

PREFIX = {"classification": "image-classification", "detection": "model_algo_1"}
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _write_json(path: Path, value) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=1))
    os.replace(tmp, path)


def export(net: mx.gluon.HybridBlock, model_dir: Path, *, task: str, network: str, classes: list[str],
           image_shape: tuple[int, int, int], hyperparameters: dict[str, str], metrics: dict,
           dataset_sizes: dict) -> Path:
    """Write the model directory; returns the symbol file's path."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    prefix = model_dir / PREFIX[task]
    _, h, w = image_shape
    net.hybridize()
    net(mx.nd.zeros((1, 3, h, w)))
    net.export(str(prefix), epoch=0)
    write_classes(model_dir / "classes.txt", classes)
    _write_json(model_dir / "model-shapes.json", [{"name": "data", "shape": [1, 3, h, w]}])
    _write_json(model_dir / "hyperparams.json", hyperparameters)
    _write_json(model_dir / "model-card.json", {
        "task": task, "network": network, "prefix": PREFIX[task], "epoch": 0,
        "input": {"name": "data", "shape": [1, 3, h, w], "layout": "NCHW", "colour": "RGB",
                  "normalisation": "(pixel / 255 - mean) / std", "mean": MEAN, "std": STD},
        "output": ("class scores (logits), shape [1, num_classes]" if task == "classification" else
                   "ids [1,N,1], scores [1,N,1], boxes [1,N,4] in input pixels (xmin, ymin, xmax, ymax); id -1 = none"),
        "classes": classes, "metrics": metrics, "dataset": dataset_sizes,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "framework": {"mxnet": mx.__version__},
    })
    return Path(f"{prefix}-symbol.json")


def load_card(model_dir: Path) -> dict:
    """The model card of a model directory, with `classes` read from classes.txt."""
    card = json.loads((Path(model_dir) / "model-card.json").read_text())
    card["classes"] = read_classes(Path(model_dir) / "classes.txt")
    return card
