"""Hyperparameters: the built-in algorithms' names, meanings and defaults, plus `task`, `network`, `seed`.

SageMaker passes every value as a string (hyperparameters.json). `resolve` turns them, once, into a
frozen dataclass of the task (`ClassificationHyperparameters` or `DetectionHyperparameters`) in
which every default, per-task choice and derived value (the network from `num_layers` /
`base_network`, `num_workers`, `kv_store`) is decided; nobody downstream reads raw strings. Errors
are HyperparameterError naming the key and the allowed values. No MXNet here: the CLI checks a
job's hyperparameters with the same specs before it lays out a job folder.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re

from magiccards.errors import HyperparameterError

TASKS = ("classification", "detection")
OPTIMIZERS = ("sgd", "adam", "rmsprop", "nag")
AUGMENTATIONS = ("crop", "crop_color", "crop_color_transform")  # classification; "" is none
DETECTION_AUGMENTATIONS = ("ssd", "color", "none")  # see train/detection_transform.py
KV_STORES = ("local", "device", "dist_sync", "dist_device_sync", "dist_async")
RESNET_LAYERS = {18: "resnet18_v1b", 34: "resnet34_v1b", 50: "resnet50_v1b", 101: "resnet101_v1b",
                 152: "resnet152_v1b"}
BUILTIN_LAYERS = (18, 34, 50, 101, 152, 200)
DETECTION_BASES = {"vgg-16": "vgg16_atrous", "resnet-50": "resnet50_v1"}
CLS, DET = TASKS


@dataclasses.dataclass(frozen=True)
class Spec:
    """How one hyperparameter is read. `default` and `choices` may differ per task: {task: value}."""

    kind: str  # int | float | bool | str | shape | steps
    default: object = None
    choices: tuple | dict | None = None
    low: float | None = None
    high: float | None = None
    tasks: tuple = TASKS

    def default_for(self, task: str):
        return self.default[task] if isinstance(self.default, dict) else self.default

    def choices_for(self, task: str | None) -> tuple | None:
        if isinstance(self.choices, dict):
            return self.choices.get(task) if task else tuple(c for cs in self.choices.values() for c in cs)
        return self.choices


SPECS: dict[str, Spec] = {
    "task": Spec("str", None, TASKS),
    "network": Spec("str", None),
    "num_classes": Spec("int", None, low=1),
    "num_training_samples": Spec("int", None, low=1),
    "num_layers": Spec("int", 152, BUILTIN_LAYERS, tasks=(CLS,)),
    "base_network": Spec("str", "vgg-16", tuple(DETECTION_BASES), tasks=(DET,)),
    "image_shape": Spec("shape", {CLS: "3,224,224", DET: "300"}),
    "epochs": Spec("int", 30, low=1),
    "learning_rate": Spec("float", {CLS: 0.1, DET: 0.001}, low=1e-12, high=10),
    "lr_scheduler_factor": Spec("float", 0.1, low=1e-6, high=1),
    "lr_scheduler_step": Spec("steps", ""),
    "warmup_epochs": Spec("int", 0, low=0),
    "optimizer": Spec("str", "sgd", OPTIMIZERS),
    "momentum": Spec("float", 0.9, low=0, high=1),
    "weight_decay": Spec("float", {CLS: 1e-4, DET: 5e-4}, low=0, high=1),
    "beta_1": Spec("float", 0.9, low=0, high=1),
    "beta_2": Spec("float", 0.999, low=0, high=1),
    "eps": Spec("float", 1e-8, low=0, high=1),
    "gamma": Spec("float", 0.9, low=0, high=1),
    "mini_batch_size": Spec("int", 32, low=1),
    "augmentation_type": Spec("str", {CLS: "", DET: "ssd"}, {CLS: ("",) + AUGMENTATIONS, DET: DETECTION_AUGMENTATIONS}),
    "use_pretrained_model": Spec("int", {CLS: 0, DET: 1}, (0, 1)),
    "top_k": Spec("int", 5, low=1, tasks=(CLS,)),
    "checkpoint_frequency": Spec("int", 1, low=1),
    "early_stopping": Spec("bool", False),
    "early_stopping_min_epochs": Spec("int", 10, low=1),
    "early_stopping_patience": Spec("int", 5, low=1),
    "early_stopping_tolerance": Spec("float", 0.0, low=0, high=1),
    "multi_label": Spec("int", 0, (0,), tasks=(CLS,)),
    "precision_dtype": Spec("str", "float32", ("float32", "float16")),
    "resize": Spec("int", None, low=8, tasks=(CLS,)),
    "kv_store": Spec("str", None, KV_STORES),
    "use_weighted_loss": Spec("int", 0, (0, 1), tasks=(CLS,)),
    "nms_threshold": Spec("float", 0.45, low=0, high=1, tasks=(DET,)),
    "overlap_threshold": Spec("float", 0.5, low=0, high=1, tasks=(DET,)),
    "label_width": Spec("int", 350, low=6, tasks=(DET,)),
    "freeze_layer_pattern": Spec("str", "", tasks=(DET,)),
    "num_workers": Spec("int", None, low=0),
    "seed": Spec("int", 0, low=0),
}


@dataclasses.dataclass(frozen=True)
class Hyperparameters:
    """What both tasks read. `given` holds the names the job set itself."""

    task: str
    network: str  # the GluonCV model: `network`, else from num_layers / base_network
    num_classes: int | None  # None: from the data
    num_training_samples: int | None
    image_shape: tuple[int, int, int]  # channels, height, width (detection: square)
    epochs: int
    learning_rate: float
    lr_scheduler_factor: float
    lr_scheduler_step: tuple[int, ...]
    warmup_epochs: int
    optimizer: str
    momentum: float
    weight_decay: float
    beta_1: float
    beta_2: float
    eps: float
    gamma: float
    mini_batch_size: int
    augmentation_type: str
    use_pretrained_model: int
    checkpoint_frequency: int
    early_stopping: bool
    early_stopping_min_epochs: int
    early_stopping_patience: int
    early_stopping_tolerance: float
    precision_dtype: str
    kv_store: str  # "device" unless set
    num_workers: int  # data-loader workers: set, else half the cores
    seed: int
    given: frozenset[str]

    def as_strings(self) -> dict[str, str]:
        """Every value as SageMaker would pass it (hyperparams.json of the model directory)."""
        return {f.name: _to_string(getattr(self, f.name)) for f in sorted(dataclasses.fields(self), key=lambda f: f.name)
                if f.name != "given" and getattr(self, f.name) is not None}


@dataclasses.dataclass(frozen=True)
class ClassificationHyperparameters(Hyperparameters):
    num_layers: int
    top_k: int
    multi_label: int
    resize: int | None  # shorter side before cropping
    use_weighted_loss: int


@dataclasses.dataclass(frozen=True)
class DetectionHyperparameters(Hyperparameters):
    base_network: str
    nms_threshold: float
    overlap_threshold: float
    label_width: int
    freeze_layer_pattern: str


def _to_string(v) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    return str(v)


_EXPECTED = {"int": "an integer", "float": "a finite number", "bool": "True or False",
             "shape": "'channels,height,width' (e.g. 3,224,224) or one size (e.g. 300)",
             "steps": "increasing epoch numbers separated by commas (e.g. 10,20)"}


def _read(spec: Spec, text: str):
    if spec.kind == "int":
        f = float(text)
        if not math.isfinite(f) or f != int(f):
            raise ValueError
        return int(f)
    if spec.kind == "float":
        f = float(text)
        if not math.isfinite(f):
            raise ValueError
        return f
    if spec.kind == "bool":
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError
        return text.lower() in ("true", "1")
    if spec.kind == "shape":
        value = tuple(int(p) for p in text.split(","))
        if len(value) not in (1, 3) or min(value) < 1:
            raise ValueError
        return value
    if spec.kind == "steps":
        value = tuple(int(p) for p in re.split(r"[,;\s]+", text) if p) if text else ()
        if any(v < 1 for v in value) or list(value) != sorted(set(value)):
            raise ValueError
        return value
    return text


def convert(name: str, raw, task: str | None = None):
    """One hyperparameter's typed value; HyperparameterError names the key and what it accepts.

    With `task` None, choices of either task are accepted (the CLI checks before it knows the task)."""
    spec = SPECS[name]
    try:
        value = _read(spec, str(raw).strip())
    except ValueError:
        raise HyperparameterError(f"hyperparameter {name}={raw!r} is not {_EXPECTED.get(spec.kind, 'text')}") from None
    choices = spec.choices_for(task)
    if choices is not None and value not in choices:
        allowed = ", ".join(str(c) for c in choices if c != "")
        scope = f" for {task}" if isinstance(spec.choices, dict) else ""
        raise HyperparameterError(f"hyperparameter {name}={raw!r} is not allowed{scope}; choose one of: {allowed}")
    if spec.low is not None and value < spec.low or spec.high is not None and value > spec.high:
        raise HyperparameterError(f"hyperparameter {name}={raw!r} is out of range [{spec.low}, {spec.high}]")
    return value


def known(raw: dict) -> dict:
    """`raw` less the keys SageMaker tuning and the SDK add ('_...', 'sagemaker_...'); unknown names are
    an error with close-match suggestions."""
    raw = {k: v for k, v in raw.items() if not k.startswith(("_", "sagemaker_"))}
    unknown = sorted(set(raw) - set(SPECS))
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, SPECS, n=2, cutoff=0.6)
            hints.append(f"{name} (did you mean {' or '.join(close)}?)" if close else name)
        raise HyperparameterError(f"unknown hyperparameter(s) {', '.join(hints)}; known: {', '.join(sorted(SPECS))}")
    return raw


def check(raw: dict, task: str | None = None) -> None:
    """Check names and values without resolving (what the CLI can do before the job starts)."""
    raw = known(raw)
    for name, value in raw.items():
        convert(name, value, task)
    if task is not None or "task" in raw:
        resolve(raw, task)


def resolve(raw: dict, task: str | None = None, num_cpus: int | None = None
            ) -> ClassificationHyperparameters | DetectionHyperparameters:
    """Typed, validated, fully resolved hyperparameters from SageMaker's string map.

    `task` is the task of the data, used when the job does not set `task`; `num_cpus` decides the
    default `num_workers` (half the cores).
    """
    raw = known(raw)
    chosen = str(raw["task"]).strip() if "task" in raw else task
    if chosen is None:
        raise HyperparameterError("cannot tell the task: set hyperparameter task=classification or task=detection")
    convert("task", chosen)
    if task is not None and chosen != task:
        raise HyperparameterError(f"hyperparameter task={chosen} but the train channel holds {task} records")
    for name in raw:
        if chosen not in SPECS[name].tasks:
            raise HyperparameterError(f"hyperparameter {name} applies to {SPECS[name].tasks[0]} only, not {chosen}")
    values = {name: convert(name, v, chosen) for name, v in raw.items()}
    full = {}
    for name, spec in SPECS.items():
        if chosen in spec.tasks:
            default = spec.default_for(chosen)
            full[name] = values[name] if name in values else (convert(name, default, chosen) if default is not None else None)
    full["task"] = chosen
    full["image_shape"] = _square_or_rgb(full["image_shape"], chosen)
    full["network"] = full["network"] or _network_from_builtin(full)
    full["kv_store"] = full["kv_store"] or "device"
    if full["num_workers"] is None:
        full["num_workers"] = max(1, (num_cpus or os.cpu_count() or 2) // 2)
    cls = ClassificationHyperparameters if chosen == CLS else DetectionHyperparameters
    return cls(given=frozenset(values), **full)


def _square_or_rgb(shape: tuple, task: str) -> tuple[int, int, int]:
    if task == CLS:
        if len(shape) == 1:
            shape = (3, shape[0], shape[0])
        if shape[0] != 3:
            raise HyperparameterError(f"image_shape {_to_string(shape)}: only 3-channel (RGB) images are supported")
        return shape
    if len(shape) == 3 and shape[1] != shape[2]:
        raise HyperparameterError(f"image_shape {_to_string(shape)}: detection needs a square input, e.g. 300 or 512")
    return (3, shape[-1], shape[-1])


def _network_from_builtin(hp: dict) -> str:
    """The GluonCV model the built-in algorithms' num_layers / base_network stand for."""
    if hp["task"] == CLS:
        if hp["num_layers"] not in RESNET_LAYERS:
            raise HyperparameterError(f"num_layers={hp['num_layers']} has no GluonCV ResNet; choose one of "
                                      f"{', '.join(map(str, RESNET_LAYERS))} or set network")
        return RESNET_LAYERS[hp["num_layers"]]
    base = DETECTION_BASES[hp["base_network"]]
    if base == "resnet50_v1":
        return "ssd_512_resnet50_v1"
    return f"ssd_{512 if hp['image_shape'][-1] >= 512 else 300}_vgg16_atrous"
