"""The model factory: one function, many GluonCV presets.

Classification takes any GluonCV ImageNet-style classification model (resnet18_v1b, resnet50_v1d,
mobilenetv3_small, ...). Detection takes the SSD presets below. ImageNet weights: `build` takes them as a file (train/weights.py finds it: pretrained channel, image, model store, download).
"""
from __future__ import annotations

import contextlib
import io
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import mxnet as mx
from gluoncv import model_zoo
from gluoncv.model_zoo.ssd.ssd import get_ssd
from gluoncv.model_zoo.ssd.vgg_atrous import vgg16_atrous_300, vgg16_atrous_512

from magiccards.errors import HyperparameterError, UserError


@dataclass(frozen=True)
class SSDPreset:
    """GluonCV's SSD recipe for one base network, given for `base_size` pixels.

    `build` scales the anchor sizes to the job's image size and derives each anchor step from the
    real feature-map size, so anchors tile the whole image at any `image_shape`.
    """
    base: str  # the base network whose ImageNet weights it starts from
    base_size: int
    features: object  # layer names of the base network, or a GluonCV feature-extractor factory
    filters: tuple | None  # channels of the extra layers appended to the base
    sizes: tuple  # anchor sizes in pixels at base_size, one more than there are feature maps
    ratios: tuple


_RATIOS_6 = ((1, 2, 0.5),) + ((1, 2, 0.5, 3, 1.0 / 3),) * 3 + ((1, 2, 0.5),) * 2
SSD_PRESETS = {
    "ssd_300_vgg16_atrous": SSDPreset("vgg16_atrous", 300, vgg16_atrous_300, None,
                                      (21, 45, 99, 153, 207, 261, 315), _RATIOS_6),
    "ssd_512_vgg16_atrous": SSDPreset("vgg16_atrous", 512, vgg16_atrous_512, None,
                                      (51.2, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6),
                                      ((1, 2, 0.5),) + ((1, 2, 0.5, 3, 1.0 / 3),) * 4 + ((1, 2, 0.5),) * 2),
    "ssd_512_resnet50_v1": SSDPreset("resnet50_v1", 512, ("stage3_activation5", "stage4_activation2"),
                                     (512, 512, 256, 256), (51.2, 133.12, 215.04, 296.96, 378.88, 460.8, 542.72),
                                     _RATIOS_6),
    "ssd_512_mobilenet1.0": SSDPreset("mobilenet1.0", 512, ("relu22_fwd", "relu26_fwd"), (512, 512, 256, 256),
                                      (51.2, 102.4, 189.4, 276.4, 363.52, 450.6, 492), _RATIOS_6),
    # the small one, for CPU. GluonCV's own ssd_300_mobilenet0.25 preset gives steps 8, 16, ... for feature
    # maps of stride 16, 32, ...: its anchors cover only the top-left half of the image. Steps here follow
    # the real feature maps.
    "ssd_300_mobilenet0.25": SSDPreset("mobilenet0.25", 300, ("relu22_fwd", "relu26_fwd"), (256, 256, 128, 128),
                                       (21, 45, 99, 153, 207, 261, 315), _RATIOS_6),
}
CLASSIFICATION_FAMILIES = ("resnet", "resnext", "se_resnext", "resnest", "mobilenet", "vgg", "densenet",
                           "squeezenet", "alexnet", "inceptionv3", "darknet53", "senet", "googlenet", "xception")


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


def weights_name(task: str, network: str) -> str:
    """The GluonCV model whose ImageNet weights `network` starts from (itself, or an SSD's base network)."""
    return network if task == "classification" else SSD_PRESETS[network].base


def build(task: str, network: str, classes: list[str], image_size: int, weights: Path | None = None,
          log=lambda message: None, shape_label: str | None = None) -> mx.gluon.HybridBlock:
    """An initialised network for `classes`; with `weights` (a GluonCV model-store file of
    `weights_name(task, network)`, see train/weights.py), the base starts from those ImageNet weights.

    An `image_size` too small for the network is a HyperparameterError naming `shape_label` (the job's
    image_shape as given)."""
    shape_label = shape_label or str(image_size)
    check_network(task, network)
    if task == "classification":
        net = model_zoo.get_model(network, pretrained=False, classes=len(classes))
        net.initialize(mx.init.Xavier(magnitude=2))
        with _size_fits(network, shape_label, lambda: net(mx.sym.var("data"))):
            net(mx.nd.zeros((1, 3, image_size, image_size)))  # settle deferred shapes
        smallest = total_stride(net)
        if image_size < smallest:
            raise HyperparameterError(f"image_shape {shape_label} is too small for {network}: it reduces images "
                                      f"{smallest}-fold, so the smallest size it takes is {smallest} "
                                      f"(e.g. image_shape 3,{max(smallest, 64)},{max(smallest, 64)})")
        if weights is not None:
            loaded, skipped = load_matching(net, weights)
            log(f"pretrained: {loaded} parameters from {weights} ({skipped} start fresh, such as the output layer)")
        return net
    preset = SSD_PRESETS[network]
    with _size_fits(network, shape_label, lambda: ssd(preset, classes, preset.base_size)(mx.sym.var("data"))[0]):
        net = ssd(preset, classes, image_size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net.initialize()
        net(mx.nd.zeros((1, 3, image_size, image_size)))
    if weights is not None:
        log(f"pretrained: {load_base(net, preset, weights)} base parameters from {weights}")
    return net


PROBE_SIZE = 224  # an input size every network takes, to measure its strides


def total_stride(net: mx.gluon.HybridBlock) -> int:
    """How many times a classifier reduces its input before the global pooling: the smallest image size
    whose last feature map still holds one cell of real pixels rather than padding (32 for ResNets)."""
    internals = net(mx.sym.var("data")).get_internals()
    shapes = internals.infer_shape(data=(1, 3, PROBE_SIZE, PROBE_SIZE))[1]
    outputs = [shape for name, shape in zip(internals.list_outputs(), shapes) if name.endswith("_output")]
    cells = [shape[-1] for shape in outputs if len(shape) == 4 and shape[-1] > 1]
    return math.ceil(PROBE_SIZE / min(cells)) if cells else 1


def smallest_size(symbol: mx.sym.Symbol, limit: int = 1024) -> int | None:
    """The smallest square input size whose shapes `symbol` can infer (sizes that pass grow upwards), or
    None when even `limit` fails."""
    def passes(size: int) -> bool:
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                symbol.infer_shape(data=(1, 3, size, size))
            return True
        except mx.base.MXNetError:
            return False

    if not passes(limit):
        return None
    low, high = 1, limit
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if passes(middle) else (middle + 1, high)
    return low


@contextlib.contextmanager
def _size_fits(network: str, shape_label: str, probe=None):
    """Turn MXNet's shape-inference failure of a first forward pass into a clear HyperparameterError that
    names the smallest size the network takes (found on the symbol `probe()` returns)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # MXNet prints the failed shapes to stdout
            yield
    except (mx.base.MXNetError, ValueError, ZeroDivisionError) as e:
        # Gluon wraps a failed first forward of deferred-shape layers in this ValueError
        if isinstance(e, ZeroDivisionError):
            reason = "a feature map has no cell left"
        else:
            shape_failure = isinstance(e, mx.base.MXNetError) or str(e).startswith("Deferred initialization failed")
            if not shape_failure or "Check failed" not in str(e):
                raise
            lines = [line for line in str(e).strip().splitlines() if "Check failed" in line]
            reason = lines[-1].split("Check failed:")[-1].strip()[:200]
        smallest = _smallest_or_none(probe) if probe else None
        hint = f"the smallest size it takes is {smallest}" if smallest else "use a larger image_shape"
        raise HyperparameterError(f"image_shape {shape_label} is too small for {network} ({reason}); {hint}") from None


def _smallest_or_none(probe) -> int | None:
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return smallest_size(probe())
    except (mx.base.MXNetError, ValueError, ZeroDivisionError):
        return None


def load_base(net: mx.gluon.HybridBlock, preset: SSDPreset, params_file: Path) -> int:
    """Load the base network's weights of `params_file` (a GluonCV model-store file, or any classifier of
    that network saved with `save_parameters`) into the SSD `net`; return how many were loaded."""
    if callable(preset.features):  # VGG atrous: the feature extractor is the base network itself
        loaded, _ = load_matching(net.features, params_file)
        return loaded
    # the file holds the base network's structural names ('features.0.weight'); the SSD's copy of the
    # base carries the base's own parameter names ('mobilenet0_conv0_weight') after the SSD's prefix
    base = model_zoo.get_model(preset.base, pretrained=False)
    saved = _saved_arrays(params_file)
    stem = re.escape(base.prefix.rstrip("0123456789_"))
    own = {}
    for name, param in net.features.collect_params().items():
        match = re.search(stem + r"\d*_(.+)$", name)
        if match:
            own[match.group(1)] = param
    loaded = 0
    for structural, param in base._collect_params_with_prefix().items():
        value, target = saved.get(structural), own.get(param.name[len(base.prefix):])
        if value is not None and target is not None and target.shape == value.shape:
            target.set_data(value)
            loaded += 1
    if loaded == 0:
        raise UserError(f"{params_file} shares no parameter with {preset.base}; is it for another network?")
    return loaded


def ssd(preset: SSDPreset, classes: list[str], image_size: int) -> mx.gluon.HybridBlock:
    """An uninitialised GluonCV SSD of `preset` whose anchors are laid out for `image_size` pixels."""
    scale = image_size / preset.base_size
    sizes = [s * scale for s in preset.sizes]
    args = dict(name=preset.base, features=preset.features, filters=preset.filters and list(preset.filters),
                sizes=sizes, ratios=[list(r) for r in preset.ratios], classes=list(classes), dataset="")
    probe = get_ssd(base_size=image_size, steps=[1] * len(preset.ratios), pretrained_base=False, **args)
    maps = mx.sym.Group(probe.features(mx.sym.var("data"))).infer_shape(data=(1, 3, image_size, image_size))[1]
    steps = [image_size / shape[-1] for shape in maps]
    return get_ssd(base_size=image_size, steps=steps, pretrained_base=False, **args)


def freeze(net: mx.gluon.Block, pattern: str) -> int:
    """Stop training every parameter whose name matches the regular expression `pattern` (the built-in
    algorithm's freeze_layer_pattern); returns how many. Names are Gluon's, e.g.
    `ssd0_mobilenet0_conv0_weight`; `re.search` applies, so `mobilenet0_conv[0-5]_` freezes the first
    base convolutions."""
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise HyperparameterError(f"freeze_layer_pattern={pattern!r} is not a regular expression ({e})") from None
    params = net.collect_params()
    matched = [p for name, p in params.items() if regex.search(name)]
    if not matched:
        examples = ", ".join(list(params)[:3])
        raise HyperparameterError(f"freeze_layer_pattern={pattern!r} matches no parameter of the network; "
                                  f"names look like {examples}")
    for param in matched:
        param.grad_req = "null"
    return len(matched)


def _saved_arrays(params_file: Path) -> dict:
    """The arrays of a .params file by parameter name (without the 'arg:'/'aux:' of exported files)."""
    return {k.split(":", 1)[-1]: v for k, v in mx.nd.load(str(params_file)).items()}


def load_matching(net: mx.gluon.Block, params_file: Path) -> tuple[int, int]:
    """Load the parameters of `params_file` whose name and shape match; return (loaded, skipped).

    This is how a 1000-class ImageNet model (or an earlier model with other classes) seeds a network
    for new classes: everything but the output layer carries over.
    """
    saved = _saved_arrays(params_file)
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
