"""The model factory: one function, many GluonCV presets.

Classification takes any GluonCV ImageNet-style classification model (resnet18_v1b, resnet50_v1d,
mobilenetv3_small, ...). Detection takes the SSD presets below. Pretrained weights never come from
the internet: they come from a `pretrained` channel or GluonCV's model store cache on disk.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import mxnet as mx
from gluoncv import model_zoo
from gluoncv.model_zoo.model_store import short_hash

from .errors import HyperparameterError, UserError

# preset name -> (GluonCV custom constructor, base network whose ImageNet weights it starts from)
SSD_PRESETS = {
    "ssd_300_vgg16_atrous": ("ssd_300_vgg16_atrous_custom", "vgg16_atrous"),
    "ssd_512_vgg16_atrous": ("ssd_512_vgg16_atrous_custom", "vgg16_atrous"),
    "ssd_512_resnet50_v1": ("ssd_512_resnet50_v1_custom", "resnet50_v1"),
    "ssd_512_mobilenet1.0": ("ssd_512_mobilenet1.0_custom", "mobilenet1.0"),
    "ssd_300_mobilenet0.25": ("ssd_300_mobilenet0.25_custom", "mobilenet0.25"),  # the small one, for CPU
}
CLASSIFICATION_FAMILIES = ("resnet", "resnext", "se_resnext", "resnest", "mobilenet", "vgg", "densenet",
                           "squeezenet", "alexnet", "inceptionv3", "darknet53", "senet", "googlenet", "xception")
STORE_ROOT = Path(os.environ.get("MXNET_HOME", Path.home() / ".mxnet")) / "models"


def classification_networks() -> list[str]:
    return sorted(n for n in model_zoo.get_model_list()
                  if n.startswith(CLASSIFICATION_FAMILIES) and "cifar" not in n and "custom" not in n)


def check_network(task: str, name: str) -> None:
    """Raise HyperparameterError with the allowed values when `name` does not fit `task`."""
    if task == "detection" and name not in SSD_PRESETS:
        raise HyperparameterError(f"network={name!r} is not an SSD preset; choose one of: {', '.join(SSD_PRESETS)}")
    if task == "classification" and name not in classification_networks():
        examples = ", ".join(n for n in ("resnet18_v1b", "resnet50_v1d", "mobilenetv3_small", "mobilenet1.0") if n)
        raise HyperparameterError(f"network={name!r} is not a GluonCV classification model; e.g. {examples} "
                                  "(any name of gluoncv.model_zoo.get_model_list() in the ResNet, MobileNet, VGG, "
                                  "DenseNet, SqueezeNet, Inception families)")


def store_file(name: str, dirs: list[Path]) -> Path | None:
    """GluonCV's pretrained file for `name` (`<name>-<hash>.params`, or `<name>.params`) in `dirs`."""
    for d in dirs:
        for candidate in (d / f"{name}-{short_hash(name)}.params", d / f"{name}.params"):
            if candidate.is_file():
                return candidate
    return None


def _missing_weights(name: str, dirs: list[Path]) -> UserError:
    where = ", ".join(str(d) for d in dirs)
    return UserError(f"use_pretrained_model=1 needs ImageNet weights for {name}, found none in {where}. "
                     f"Provide a 'pretrained' channel holding {name}-{short_hash(name)}.params (GluonCV's model store "
                     f"file) or {name}.params, or set use_pretrained_model=0; nothing can be downloaded here.")


def build(task: str, network: str, classes: list[str], image_size: int, pretrained: bool = False,
          pretrained_dirs: list[Path] | None = None) -> mx.gluon.HybridBlock:
    """An initialised network for `classes`; with `pretrained`, the base starts from ImageNet weights."""
    check_network(task, network)
    dirs = list(pretrained_dirs or []) + [STORE_ROOT]
    if task == "classification":
        net = model_zoo.get_model(network, pretrained=False, classes=len(classes))
        net.initialize(mx.init.Xavier(magnitude=2))
        net(mx.nd.zeros((1, 3, image_size, image_size)))  # settle deferred shapes
        if pretrained:
            weights = store_file(network, dirs)
            if weights is None:
                raise _missing_weights(network, dirs)
            load_matching(net, weights)
        return net
    constructor, base = SSD_PRESETS[network]
    root = None
    if pretrained:
        weights = store_file(base, dirs)
        if weights is None or weights.name != f"{base}-{short_hash(base)}.params":
            raise _missing_weights(base, dirs)
        root = str(weights.parent)
    kwargs = {"root": root} if root else {}
    net = model_zoo.get_model(constructor, classes=list(classes), pretrained_base=pretrained, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net.initialize()
    net(mx.nd.zeros((1, 3, image_size, image_size)))
    return net


def load_matching(net: mx.gluon.Block, params_file: Path) -> tuple[int, int]:
    """Load the parameters of `params_file` whose name and shape match; return (loaded, skipped).

    This is how a 1000-class ImageNet model (or an earlier model with other classes) seeds a network
    for new classes: everything but the output layer carries over.
    """
    saved = mx.nd.load(str(params_file))
    saved = {k.split(":", 1)[-1]: v for k, v in saved.items()}
    own = net._collect_params_with_prefix()
    loaded = 0
    for name, param in own.items():
        value = saved.get(name)
        if value is not None and value.shape == param.shape:
            param.set_data(value)
            loaded += 1
    if loaded == 0:
        raise UserError(f"{params_file} shares no parameter with this network; is it for another network?")
    return loaded, len(own) - loaded
