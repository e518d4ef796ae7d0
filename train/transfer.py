"""Starting a network from an earlier model of the same network with other classes (the `pretrained` channel
holding a model directory or model.tar.gz).

A detector keeps all of the earlier detector (features, extra layers, box regressors) and gets a new
class head as GluonCV's `reset_class` makes it: classes present in both keep their weights (and the
background's); when the earlier detector knows one class only (a class-agnostic "card" base), every new
class starts from it. A classifier keeps everything but its output layer.

The same transfer starts a detector, or a classifier, from the synthetic-card base shipped with the package
(`shipped_base`: `make base-detector`, `make base-classifier`) when use_pretrained_model=1 finds no ImageNet
weights.
"""
from __future__ import annotations

from pathlib import Path

import mxnet as mx

from magiccards.errors import DataError, ModelDirError
from magiccards.model_dir import CARD, TRAINING_STATE, ModelDir, open_model_dir

from . import models

SHIPPED = Path(__file__).resolve().parent / "base_models"  # `make base-detector` and `make base-classifier`


def shipped_base(network: str) -> Path | None:
    """The synthetic-card base model shipped for `network`, or None: a detector knows one class 'card'; a
    classifier the 100 designs of `magiccards.data.cards.base_classes()`."""
    folder = SHIPPED / f"{network}-card"
    return folder if (folder / CARD).is_file() else None


def shipped_networks() -> list[str]:
    """The networks a synthetic-card base is shipped for."""
    return sorted(p.name[:-len("-card")] for p in SHIPPED.glob("*-card") if (p / CARD).is_file())


def earlier_model(channel: Path | None, workdir: Path) -> ModelDir | None:
    """The model in a `pretrained` channel, or None when it holds GluonCV weight files instead."""
    if channel is None or not Path(channel).exists():
        return None
    has_model = any(p.name == CARD or p.name.endswith((".tar.gz", ".tgz"))
                    for p in Path(channel).rglob("*") if p.is_file())
    if not has_model:
        return None
    try:
        return open_model_dir(Path(channel), workdir / "pretrained-model", require=(TRAINING_STATE,))
    except ModelDirError as e:
        raise DataError(f"the pretrained channel holds a model that cannot be used: {e}") from None


def check_same_network(earlier: ModelDir, task: str, network: str) -> None:
    if earlier.task != task or earlier.network != network:
        raise DataError(f"the pretrained channel's model is a {earlier.task} {earlier.network or '(unknown network)'}, "
                        f"but this job trains a {task} {network}: transfer needs the same network (set "
                        f"network={earlier.network}, or give ImageNet weights instead)")


def carry_over(net: mx.gluon.Block, earlier: ModelDir, skip: frozenset = frozenset(), channel: str = "pretrained") -> int:
    """Set every parameter of `net` but those in `skip` from the earlier model (from `channel`); returns how
    many. Constants
    (an SSD's anchors) stay as `net` lays them out for its own image size: the earlier model's are laid out
    for the size it was trained at (loading them put a 256 px base's anchors into a 300 px detector)."""
    try:
        saved = mx.nd.load(str(earlier.training_state_file))  # keyed as _collect_params_with_prefix keys them
    except (mx.base.MXNetError, OSError) as e:
        raise DataError(f"the {channel} channel's parameters cannot be read: {str(e).splitlines()[0][:200]}") from None
    loaded = 0
    for name, param in net._collect_params_with_prefix().items():
        if name in skip or isinstance(param, mx.gluon.Constant):
            continue
        value = saved.get(name)
        if value is None or value.shape != param.shape:
            raise DataError(f"the {channel} channel's model does not fit {earlier.network} ({name} is missing or "
                            "of another shape)")
        param.set_data(value)
        loaded += 1
    return loaded


def detector(earlier: ModelDir, network: str, classes: list[str], image_size: int, log=print):
    """The SSD for `classes`, started from all of the earlier detector; its class head reset as reset_class does."""
    old = list(earlier.classes)
    net = models.build("detection", network, old, image_size)
    carry_over(net, earlier)
    kept = [c for c in classes if c in old]
    if len(old) == 1 and not kept:
        reuse = {c: old[0] for c in classes}
        how = f"every class starts from the earlier detector's only class {old[0]!r}"
    else:
        reuse = {c: c for c in kept}
        how = (f"classes kept with their weights: {', '.join(kept)}" if kept else "no class in common: the class "
               "head starts fresh")
    net.reset_class(list(classes), reuse_weights=reuse or None)
    net(mx.nd.zeros((1, 3, image_size, image_size)))
    log(f"transfer: all of the earlier detector {earlier.path} (features, extra layers, box regressors) carried over; "
        f"new class head for {len(classes)} classes ({how})")
    return net


def classifier(earlier: ModelDir, network: str, classes: list[str], image_size: int, shape_label: str, log=print):
    """The classifier for `classes`, started from everything of the earlier one but its output layer."""
    net = models.build("classification", network, classes, image_size, shape_label=shape_label)
    output = output_parameters(network, len(classes), image_size)
    loaded = carry_over(net, earlier, skip=frozenset(output))
    log(f"transfer: {loaded} parameters of the earlier classifier {earlier.path} carried over; the output layer "
        f"({', '.join(sorted(output))}) starts fresh for {len(classes)} classes")
    return net


def output_parameters(network: str, num_classes: int, image_size: int) -> set[str]:
    """The parameters whose shape depends on the number of classes: the output layer, whatever it is named."""
    one = models.build("classification", network, ["a"] * num_classes, image_size)
    two = models.build("classification", network, ["a"] * (num_classes + 1), image_size)
    a, b = one._collect_params_with_prefix(), two._collect_params_with_prefix()
    return {name for name in a if a[name].shape != b[name].shape}
