"""The training job: what SageMaker runs through `SAGEMAKER_TRAINING_MODULE=magiccards.train.entry:main`.

Everything comes from the job layout through `sagemaker_training.environment.Environment`
(hyperparameters, channels, hosts, GPUs, model and output folders); `SAGEMAKER_BASE_DIR` points it
at any folder laid out like /opt/ml, which is how `magiccards train` and the tests run it without Docker.
"""
from __future__ import annotations

import os
import random
import shutil
import tarfile
import tempfile
from pathlib import Path

import mxnet as mx
import numpy as np

from . import models, optim
from .data import readers
from .data.pipe import next_pass, open_pipe_channel
from .distributed import ParameterServer
from .data.samples import read_classes
from .errors import DataError, HyperparameterError, UserError
from .export import PREFIX, export
from .hyperparameters import network_name, parse
from .loop import Paths, fit
from .reporting import say, write_confusion, write_per_class_ap

STATE_PARAMS = "training-state.params"  # gluon parameter names, for incremental training


def main() -> None:
    """Entry function for the toolkit (SAGEMAKER_TRAINING_MODULE)."""
    from sagemaker_training import environment
    env = environment.Environment()
    base = Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml"))
    paths = Paths(Path(env.model_dir), Path(env.output_data_dir), base / "checkpoints")
    pipes = {name for name, cfg in env.input_data_config.items() if cfg.get("TrainingInputMode") == "Pipe"}
    run(env.hyperparameters, {k: Path(v) for k, v in env.channel_input_dirs.items()}, paths,
        num_gpus=env.num_gpus, host=env.current_host, num_cpus=env.num_cpus, pipe_channels=pipes,
        data_dir=Path(env.input_dir) / "data", hosts=list(env.hosts), interface=env.network_interface_name)


def _classes(channels: dict[str, Path], counts, num_classes: int | None) -> list[str]:
    for name in ("train", "train_lst", "validation", "classes"):
        if name in channels and channels[name].is_dir():
            found = sorted(channels[name].rglob("classes.txt"))
            if found:
                classes = read_classes(found[0])
                break
    else:
        classes = None
    top = max(counts) + 1 if counts else 0
    if classes is None:
        n = num_classes or top
        classes = [f"class{i}" for i in range(n)]
    if num_classes is not None and num_classes != len(classes):
        raise HyperparameterError(f"num_classes={num_classes} does not match the {len(classes)} classes of the data "
                                  f"({', '.join(classes[:10])}{', ...' if len(classes) > 10 else ''})")
    if top > len(classes):
        raise DataError(f"the records use class index {top - 1} but only {len(classes)} classes are known; "
                        "set num_classes or ship the classes.txt written by `magiccards pack`")
    return classes


def _open(channels: dict[str, Path], split: str, task: str, workdir: Path):
    if f"{split}_lst" in channels:
        if split not in channels:
            raise DataError(f"channel {split}_lst needs the images in a channel named {split}")
        return readers.open_lst_channel(channels[split], channels[f"{split}_lst"], task)
    return readers.open_channel(channels[split], task, workdir)


def _model_channel(channel: Path, workdir: Path) -> Path:
    """The model directory inside a `model` channel (a model.tar.gz or an unpacked directory)."""
    archives = sorted(channel.rglob("*.tar.gz"))
    if archives:
        target = workdir / "model"
        target.mkdir(exist_ok=True)
        with tarfile.open(archives[0]) as tar:
            tar.extractall(target, filter="data")
        channel = target
    found = sorted(channel.rglob(STATE_PARAMS))
    if not found:
        raise DataError(f"the model channel holds no {STATE_PARAMS}; give it the model.tar.gz of an earlier job")
    return found[0].parent


def run(raw_hp: dict, channels: dict[str, Path], paths: Paths, num_gpus: int = 0, host: str = "algo-1",
        num_cpus: int | None = None, pipe_channels: set[str] = frozenset(), data_dir: Path | None = None,
        hosts: list[str] | None = None, interface: str | None = None) -> dict:
    """Train and export; returns the final training state (history, best score).

    Channels named in `pipe_channels` are read from the FIFOs `<data_dir>/<channel>_<n>` (Pipe mode).
    """
    if "train" not in channels and "train_lst" not in channels:
        raise DataError(f"the job has no train channel (channels: {', '.join(sorted(channels)) or 'none'}); "
                        "add a channel named 'train' holding the .rec from `magiccards pack`")
    lst_task = "train_lst" in channels
    pipes: dict = {}
    if "train" in pipe_channels:
        first, pipes["train"] = open_pipe_channel(data_dir, "train", raw_hp.get("task"))
        task = first.task
    else:
        task = raw_hp.get("task") or readers.infer_task(channels["train_lst" if lst_task else "train"])
    hp = parse(raw_hp, task if "task" not in raw_hp else None)
    workdir = Path(tempfile.mkdtemp(prefix="magiccards-"))
    try:
        train = first if "train" in pipes else _open(channels, "train", hp.task, workdir)
        val = None
        if "validation" in pipe_channels:
            val, pipes["validation"] = open_pipe_channel(data_dir, "validation", hp.task)
        elif "validation" in channels:
            val = _open(channels, "validation", hp.task, workdir)
        for data in filter(None, (train, val)):
            if data.left_out:
                say(f"note: {data.left_out} image(s) of {data.source} list no object and are left out "
                    "(SSD training needs at least one box per image)")
        network = network_name(hp)
        models.check_network(hp.task, network)
        classes = _classes(channels, train.class_counts, hp.values["num_classes"])
        if hp.mini_batch_size > len(train.dataset):
            raise HyperparameterError(f"mini_batch_size={hp.mini_batch_size} is larger than the "
                                      f"{len(train.dataset)} training images; lower it")
        if hp.values["num_training_samples"] and hp.num_training_samples != len(train.dataset):
            say(f"note: num_training_samples={hp.num_training_samples} but the train channel holds "
                f"{len(train.dataset)} images; using the data")
        ctx = [mx.gpu(i) for i in range(num_gpus)] or [mx.cpu()]
        mx.random.seed(hp.seed)
        random.seed(hp.seed)
        np.random.seed(hp.seed)
        say(f"{hp.task}: {network}, {len(classes)} classes, {len(train.dataset)} training / "
            f"{len(val.dataset) if val else 0} validation images ({train.source}), on {ctx}")
        net = _build(hp, network, classes, channels, workdir)
        net.collect_params().reset_ctx(ctx)
        num_workers = hp.num_workers if hp.num_workers is not None else max(1, (num_cpus or os.cpu_count() or 2) // 2)
        kvstore, part, parts, is_master = hp.kv_store or "device", 0, 1, True
        if hosts and len(hosts) > 1:
            kvstore = ParameterServer(hosts, host, interface).start()
            part, parts, is_master = kvstore.rank, kvstore.num_workers, host == sorted(hosts)[0]
        recipe = _recipe(hp, net, train, val, classes, ctx, num_workers, part, parts)
        trainer = optim.trainer(net.collect_params(), hp, max(1, recipe.steps_per_epoch()), kvstore=kvstore)
        recipe.trainer = trainer
        net.hybridize(static_alloc=True, static_shape=True)
        try:
            state = fit(recipe, net, trainer, hp, paths, host=host, is_master=is_master, distributed=parts > 1,
                        on_epoch=_periodic_export(hp, net, paths.model_dir) if is_master else None,
                        **_pipe_hooks(pipes, train, val))
        except mx.base.MXNetError as e:
            if any(sign in str(e).lower() for sign in ("out of memory", "bad_alloc", "failed to allocate")):
                raise UserError("out of memory: lower mini_batch_size or image_shape, or use a larger instance") from None
            raise
        except MemoryError:
            raise UserError("out of memory: lower mini_batch_size or image_shape, or use a larger instance") from None
        if not is_master:
            say(f"{host}: training done; {sorted(hosts)[0]} writes the model")
            return state
        metrics = _final_report(hp, recipe, classes, paths, state)
        export(net, paths.model_dir, task=hp.task, network=network, classes=classes, image_shape=hp.image_shape,
               hyperparameters=hp.as_strings(), metrics=metrics,
               dataset_sizes={"train": len(train.dataset), "validation": len(val.dataset) if val else 0})
        net.save_parameters(str(paths.model_dir / STATE_PARAMS))
        say(f"model written to {paths.model_dir} ({PREFIX[hp.task]}-symbol.json, {PREFIX[hp.task]}-0000.params)")
        return state
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _build(hp, network, classes, channels, workdir):
    pretrained_dirs = [channels["pretrained"]] if "pretrained" in channels else []
    size = hp.image_shape[-1]
    try:
        net = models.build(hp.task, network, classes, size, pretrained=bool(hp.use_pretrained_model),
                           pretrained_dirs=pretrained_dirs, log=say)
    except (mx.base.MXNetError, ValueError) as e:
        lines = [line for line in str(e).strip().splitlines() if "Check failed" in line] or str(e).strip().splitlines()
        reason = lines[-1].split("Check failed:")[-1].strip()[:200]
        raise HyperparameterError(f"image_shape {','.join(map(str, hp.image_shape))} is too small for {network} "
                                  f"({reason}); use a larger image_shape") from None
    if "model" in channels:
        model_dir = _model_channel(channels["model"], workdir)
        previous = read_classes(model_dir / "classes.txt") if (model_dir / "classes.txt").is_file() else None
        if previous is not None and previous != classes:
            raise DataError(f"the model channel's classes {previous} differ from the data's {classes}; "
                            "incremental training needs the same classes in the same order")
        try:
            net.load_parameters(str(model_dir / STATE_PARAMS))
        except (AssertionError, mx.base.MXNetError) as e:
            raise DataError(f"the model channel's parameters do not fit {network}: {str(e).splitlines()[0][:200]}") from None
        say(f"incremental training: starting from {model_dir}")
    if hp.task == "detection" and hp.freeze_layer_pattern:
        say(f"freeze_layer_pattern {hp.freeze_layer_pattern!r}: {models.freeze(net, hp.freeze_layer_pattern)} "
            "parameters stay as they are")
    return net


def _recipe(hp, net, train, val, classes, ctx, num_workers, part=0, parts=1):
    if hp.task == "classification":
        from .classification import ClassificationRecipe
        return ClassificationRecipe(net, None, train.dataset, val.dataset if val else None, hp, classes, ctx,
                                    class_counts=train.class_counts, num_workers=num_workers, part=part, parts=parts)
    from .detection import DetectionRecipe
    return DetectionRecipe(net, None, train.dataset, val.dataset if val else None, hp, classes, ctx,
                           num_workers=num_workers, part=part, parts=parts)


def _pipe_hooks(pipes: dict, train, val) -> dict:
    """Read the next Pipe-mode pass before each epoch and validation after the first of each."""
    hooks = {}
    if "train" in pipes:
        hooks["before_epoch"] = _NextPass(pipes["train"], train.dataset)
    if "validation" in pipes:
        hooks["before_evaluate"] = _NextPass(pipes["validation"], val.dataset)
    return hooks


class _NextPass:
    """A hook that reads a channel's next Pipe-mode pass into `dataset` on every call but the first
    (the first pass was read before training started)."""

    def __init__(self, pipe, dataset):
        self.pipe, self.dataset, self.calls = pipe, dataset, 0

    def __call__(self, *_) -> None:
        if self.calls:
            next_pass(self.pipe, self.dataset)
        self.calls += 1


def _periodic_export(hp, net, model_dir: Path):
    """With an explicit checkpoint_frequency, keep <prefix>-NNNN.params every N epochs, like the built-ins."""
    if "checkpoint_frequency" not in hp.given:
        return None

    def save(epoch: int) -> None:
        if (epoch + 1) % hp.checkpoint_frequency == 0:
            model_dir.mkdir(parents=True, exist_ok=True)
            _, h, w = hp.image_shape
            net(mx.nd.zeros((1, 3, h, w), ctx=net.collect_params().list_ctx()[0]))
            net.export(str(model_dir / PREFIX[hp.task]), epoch=epoch + 1)
    return save


def _final_report(hp, recipe, classes, paths: Paths, state: dict) -> dict:
    metrics = {"best_epoch": state.get("best_epoch"), "epochs_run": len(state["history"])}
    if recipe.val_loader is None:
        metrics["train_score"] = state.get("best")
        return metrics
    final = recipe.evaluate()
    metrics.update(final)
    if hp.task == "classification":
        metrics["per_class_accuracy"] = write_confusion(paths.output_dir, recipe.confusion, classes)
    else:
        metrics["per_class_ap"] = write_per_class_ap(paths.output_dir, classes, recipe.per_class_ap)
    return metrics
