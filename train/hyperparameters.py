"""Hyperparameters: the built-in algorithms' names, meanings and defaults, plus `task`, `network`, `seed`.

SageMaker passes every value as a string (hyperparameters.json); `parse` turns them into typed values,
applies the defaults of the task (image classification or object detection, as the built-in
algorithms define them) and raises HyperparameterError naming the key and the allowed values.
"""
from __future__ import annotations

import dataclasses
import re

from .errors import HyperparameterError

TASKS = ("classification", "detection")
OPTIMIZERS = ("sgd", "adam", "rmsprop", "nag")
AUGMENTATIONS = ("crop", "crop_color", "crop_color_transform")  # classification; "" is none
DETECTION_AUGMENTATIONS = ("ssd", "color", "none")  # see train/detection_transform.py
KV_STORES = ("local", "device", "dist_sync", "dist_device_sync", "dist_async")
RESNET_LAYERS = {18: "resnet18_v1b", 34: "resnet34_v1b", 50: "resnet50_v1b", 101: "resnet101_v1b",
                 152: "resnet152_v1b"}
BUILTIN_LAYERS = (18, 34, 50, 101, 152, 200)
DETECTION_BASES = {"vgg-16": "vgg16_atrous", "resnet-50": "resnet50_v1"}


@dataclasses.dataclass
class Spec:
    kind: str  # int | float | bool | str | shape | steps
    default: object = None
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    tasks: tuple = TASKS


# Defaults that differ per task: {name: (classification default, detection default)}
TASK_DEFAULTS = {"learning_rate": (0.1, 0.001), "weight_decay": (1e-4, 5e-4), "use_pretrained_model": (0, 1),
                 "image_shape": ("3,224,224", "300"), "augmentation_type": ("", "ssd")}
# Values allowed for one task only: {name: (classification choices, detection choices)}
TASK_CHOICES = {"augmentation_type": (("",) + AUGMENTATIONS, DETECTION_AUGMENTATIONS)}

SPECS: dict[str, Spec] = {
    "task": Spec("str", None, TASKS),
    "network": Spec("str", None),
    "num_classes": Spec("int", None, low=1),
    "num_training_samples": Spec("int", None, low=1),
    "num_layers": Spec("int", 152, BUILTIN_LAYERS, tasks=("classification",)),
    "base_network": Spec("str", "vgg-16", tuple(DETECTION_BASES), tasks=("detection",)),
    "image_shape": Spec("shape", None),
    "epochs": Spec("int", 30, low=1),
    "learning_rate": Spec("float", None, low=1e-12, high=10),
    "lr_scheduler_factor": Spec("float", 0.1, low=1e-6, high=1),
    "lr_scheduler_step": Spec("steps", ""),
    "warmup_epochs": Spec("int", 0, low=0),
    "optimizer": Spec("str", "sgd", OPTIMIZERS),
    "momentum": Spec("float", 0.9, low=0, high=1),
    "weight_decay": Spec("float", None, low=0, high=1),
    "beta_1": Spec("float", 0.9, low=0, high=1),
    "beta_2": Spec("float", 0.999, low=0, high=1),
    "eps": Spec("float", 1e-8, low=0, high=1),
    "gamma": Spec("float", 0.9, low=0, high=1),
    "mini_batch_size": Spec("int", 32, low=1),
    "augmentation_type": Spec("str", ""),  # choices per task: TASK_CHOICES
    "use_pretrained_model": Spec("int", None, (0, 1)),
    "top_k": Spec("int", 5, low=1, tasks=("classification",)),
    "checkpoint_frequency": Spec("int", 1, low=1),
    "early_stopping": Spec("bool", False),
    "early_stopping_min_epochs": Spec("int", 10, low=1),
    "early_stopping_patience": Spec("int", 5, low=1),
    "early_stopping_tolerance": Spec("float", 0.0, low=0, high=1),
    "multi_label": Spec("int", 0, (0,), tasks=("classification",)),
    "precision_dtype": Spec("str", "float32", ("float32", "float16")),
    "resize": Spec("int", None, low=8, tasks=("classification",)),
    "kv_store": Spec("str", None, KV_STORES),
    "use_weighted_loss": Spec("int", 0, (0, 1), tasks=("classification",)),
    "nms_threshold": Spec("float", 0.45, low=0, high=1, tasks=("detection",)),
    "overlap_threshold": Spec("float", 0.5, low=0, high=1, tasks=("detection",)),
    "label_width": Spec("int", 350, low=6, tasks=("detection",)),
    "freeze_layer_pattern": Spec("str", "", tasks=("detection",)),
    "num_workers": Spec("int", None, low=0),
    "seed": Spec("int", 0, low=0),
}


@dataclasses.dataclass
class Hyperparameters:
    """Typed hyperparameters; `values` holds every known name, `given` the names the job set."""

    values: dict
    given: set

    def __getattr__(self, name):
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def as_strings(self) -> dict[str, str]:
        return {k: _to_string(v) for k, v in sorted(self.values.items()) if v is not None}


def _to_string(v) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    return str(v)


def _convert(name: str, spec: Spec, raw):
    text = str(raw).strip()
    try:
        if spec.kind == "int":
            f = float(text)
            if f != int(f):
                raise ValueError
            value = int(f)
        elif spec.kind == "float":
            value = float(text)
        elif spec.kind == "bool":
            low = text.lower()
            if low not in ("true", "false", "1", "0"):
                raise ValueError
            value = low in ("true", "1")
        elif spec.kind == "shape":
            value = tuple(int(p) for p in text.split(","))
            if len(value) not in (1, 3) or min(value) < 1:
                raise ValueError
        elif spec.kind == "steps":
            value = tuple(int(p) for p in re.split(r"[,;\s]+", text) if p) if text else ()
            if any(v < 1 for v in value) or list(value) != sorted(set(value)):
                raise ValueError
        else:
            value = text
    except ValueError:
        expected = {"int": "an integer", "float": "a number", "bool": "True or False",
                    "shape": "'channels,height,width' (e.g. 3,224,224) or one size (e.g. 300)",
                    "steps": "increasing epoch numbers separated by commas (e.g. 10,20)"}.get(spec.kind, "text")
        raise HyperparameterError(f"hyperparameter {name}={raw!r} is not {expected}") from None
    if spec.choices is not None and value not in spec.choices:
        allowed = ", ".join(str(c) for c in spec.choices if c != "")
        raise HyperparameterError(f"hyperparameter {name}={raw!r} is not allowed; choose one of: {allowed}")
    if spec.low is not None and value < spec.low or spec.high is not None and value > spec.high:
        raise HyperparameterError(f"hyperparameter {name}={raw!r} is out of range [{spec.low}, {spec.high}]")
    return value


def parse(raw: dict, task: str | None = None) -> Hyperparameters:
    """Typed, validated hyperparameters from SageMaker's string map (or already-typed values).

    `task` is the task inferred from the data, used when the job does not set `task`.
    Keys starting with '_' or 'sagemaker_' (added by SageMaker tuning and the SDK) are ignored.
    """
    raw = {k: v for k, v in raw.items() if not k.startswith(("_", "sagemaker_"))}
    unknown = sorted(set(raw) - set(SPECS))
    if unknown:
        raise HyperparameterError(f"unknown hyperparameter(s) {', '.join(unknown)}; known: {', '.join(sorted(SPECS))}")
    values = {name: _convert(name, SPECS[name], v) for name, v in raw.items()}
    chosen = values.get("task") or task
    if chosen is None:
        raise HyperparameterError("cannot tell the task: set hyperparameter task=classification or task=detection")
    if task is not None and values.get("task") and values["task"] != task:
        raise HyperparameterError(f"hyperparameter task={values['task']} but the train channel holds {task} records")
    for name in values:
        if chosen not in SPECS[name].tasks:
            raise HyperparameterError(f"hyperparameter {name} applies to {SPECS[name].tasks[0]} only, not {chosen}")
    for name, per_task in TASK_CHOICES.items():
        allowed = per_task[TASKS.index(chosen)]
        if name in values and values[name] not in allowed:
            raise HyperparameterError(f"hyperparameter {name}={raw[name]!r} is not allowed for {chosen}; choose one of: "
                                      f"{', '.join(c for c in allowed if c)}")
    full = {name: spec.default for name, spec in SPECS.items()}
    for name, (cls_default, det_default) in TASK_DEFAULTS.items():
        full[name] = _convert(name, SPECS[name], cls_default if chosen == "classification" else det_default)
    full.update(values)
    full["task"] = chosen
    _check_shape(full)
    return Hyperparameters(full, set(values))


def _check_shape(hp: dict) -> None:
    shape = hp["image_shape"]
    if hp["task"] == "classification":
        if len(shape) == 1:
            shape = (3, shape[0], shape[0])
        if shape[0] != 3:
            raise HyperparameterError(f"image_shape {_to_string(shape)}: only 3-channel (RGB) images are supported")
        hp["image_shape"] = shape
    else:
        side = shape[-1]
        if len(shape) == 3 and shape[1] != shape[2]:
            raise HyperparameterError(f"image_shape {_to_string(shape)}: detection needs a square input, e.g. 300 or 512")
        hp["image_shape"] = (3, side, side)


def network_name(hp: Hyperparameters) -> str:
    """The GluonCV model name: `network` when set, else from num_layers / base_network like the built-ins."""
    if hp.network:
        return hp.network
    if hp.task == "classification":
        if hp.num_layers not in RESNET_LAYERS:
            raise HyperparameterError(f"num_layers={hp.num_layers} has no GluonCV ResNet; choose one of "
                                      f"{', '.join(map(str, RESNET_LAYERS))} or set network")
        return RESNET_LAYERS[hp.num_layers]
    base = DETECTION_BASES[hp.base_network]
    side = hp.image_shape[-1]
    if base == "resnet50_v1":
        return "ssd_512_resnet50_v1"
    return f"ssd_{512 if side >= 512 else 300}_vgg16_atrous"
