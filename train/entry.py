"""The training job: what SageMaker runs through `SAGEMAKER_TRAINING_MODULE=magiccards.train.entry:main`.

Everything comes from the job layout through `sagemaker_training.environment.Environment`
(hyperparameters, channels, hosts, GPUs, model and output folders), gathered in one `Job`;
`SAGEMAKER_BASE_DIR` points it at any folder laid out like /opt/ml, which is how `magiccards train`
and the tests run it without Docker. `run` reads top to bottom:
channels -> hyperparameters -> classes -> network -> recipe -> fit -> export.
"""
from __future__ import annotations

import contextlib
import hashlib
import random
import shutil
import tempfile
from pathlib import Path

import mxnet as mx
import numpy as np

from magiccards.errors import DataError, HyperparameterError, ModelDirError, UserError
from magiccards.files import DISK_FULL, writing
from magiccards.model_dir import (
    TRAINING_STATE,
    open_model_dir,
    params_name,
    symbol_name,
)

from . import devices, models, optim, transfer, weights
from .channels import class_names, crop_rule, data_task, open_split, require_train
from .checkpoints import job_fingerprint
from .distributed import ParameterServer
from .export import export, write_graph
from .hyperparameters import Hyperparameters, resolve
from .job import Job
from .loop import Paths, fit
from .readers import ChannelData
from .reporting import say, write_confusion, write_per_class_ap


def main() -> None:
    """Entry function for the toolkit (SAGEMAKER_TRAINING_MODULE). A user's mistake becomes the
    toolkit's ClientError, so its message is the job's FailureReason, without a traceback."""
    from sagemaker_training import environment
    from sagemaker_training.errors import ClientError
    try:
        run(Job.from_environment(environment.Environment()))
    except UserError as e:
        raise ClientError(str(e)) from None


def run(job: Job) -> dict:
    """Train and export; returns the final training state (history, best score)."""
    require_train(job)
    workdir = Path(tempfile.mkdtemp(prefix="magiccards-"))
    try:
        hp, train = _hyperparameters_and_train(job, workdir)
        val = open_split(job, "validation", hp.task, workdir)
        _note_left_out(train, val)
        models.check_network(hp.task, hp.network)
        classes = class_names(job, train, hp.num_classes)
        _check_sizes(hp, train)
        if hp.task == "classification" and hp.top_k > len(classes):
            say(f"note: top_k={hp.top_k} but there are {len(classes)} classes; "
                f"validation_top_k_accuracy counts the top {len(classes)}")
        ctx = devices.contexts(job.num_gpus)
        _seed(hp.seed)
        say(f"{hp.task}: {hp.network}, {len(classes)} classes, {len(train.dataset)} training / "
            f"{len(val.dataset) if val else 0} validation images ({train.source}), on {ctx}")

        net = _network(hp, classes, job, workdir)
        net.collect_params().reset_ctx(ctx)
        kvstore, part, parts = _kvstore(job, hp)
        recipe = _recipe(hp, net, train, val, classes, ctx, part, parts)
        recipe.trainer = optim.trainer(net.collect_params(), hp, max(1, recipe.steps_per_epoch()), kvstore=kvstore)
        net.hybridize(static_alloc=True, static_shape=True)
        paths = Paths(job.model_dir, job.output_dir, job.checkpoints)
        fingerprint = job_fingerprint(hp, {"train": train.digest, "validation": val.digest if val else None,
                                           **_channel_digests(job, ("model", "pretrained"))})
        with _out_of_memory_is_a_user_error(), writing("checkpoints, model or output (the disk is full: free space "
                                                        "or give the job a larger volume)", DISK_FULL):
            state = fit(recipe, net, recipe.trainer, hp, paths, host=job.current_host, is_master=job.is_master,
                        distributed=parts > 1, fingerprint=fingerprint,
                        on_epoch=_periodic_export(hp, net, job.model_dir) if job.is_master else None)
        if not job.is_master:
            say(f"{job.current_host}: training done; {job.hosts[0]} writes the model")
            return state
        if state.get("already_done") and _holds_a_model(job.model_dir):
            say(f"the model in {job.model_dir} is this job's and stays as it is (pass --fresh to train again)")
            return state

        with writing("the model (the disk is full: free space or give the job a larger volume)", DISK_FULL):
            _final_export(hp, net, recipe, classes, paths, state, train, val, crop_rule(job))
        say(f"model written to {job.model_dir} ({symbol_name(hp.task)}, {params_name(hp.task)})")
        return state
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _final_export(hp, net, recipe, classes, paths: Paths, state: dict, train, val, crops: dict | None) -> None:
    metrics = _final_report(hp, recipe, classes, paths, state)
    export(net, paths.model_dir, task=hp.task, network=hp.network, classes=classes, image_shape=hp.image_shape,
           hyperparameters=hp.as_strings(), metrics=metrics,
           dataset_sizes={"train": len(train.dataset), "validation": len(val.dataset) if val else 0,
                          **({"crops": crops} if crops else {})})


def _channel_digests(job: Job, names: tuple[str, ...]) -> dict[str, str]:
    """A digest of the file names and sizes of each of these channels the job has (model, pretrained)."""
    digests = {}
    for name in names:
        if name in job.channels:
            files = sorted((str(p.relative_to(job.channels[name])), p.stat().st_size)
                           for p in job.channels[name].rglob("*") if p.is_file())
            digests[name] = hashlib.sha256(repr(files).encode()).hexdigest()
    return digests


def _holds_a_model(folder: Path) -> bool:
    try:
        open_model_dir(folder)
        return True
    except ModelDirError:
        return False


def _hyperparameters_and_train(job: Job, workdir: Path) -> tuple[Hyperparameters, ChannelData]:
    """The resolved hyperparameters and the train data. The task is the job's `task` when set (every
    record is then checked against it), else that of the train channel's records."""
    raw = job.hyperparameters
    if "task" in raw:
        hp = resolve(raw, None, job.num_cpus)
        return hp, open_split(job, "train", hp.task, workdir)
    task = data_task(job)
    train = open_split(job, "train", task, workdir)
    return resolve(raw, train.task, job.num_cpus), train


def _note_left_out(*splits: ChannelData | None) -> None:
    for data in filter(None, splits):
        if data.left_out:
            say(f"note: {data.left_out} image(s) of {data.source} list no object and are left out "
                "(SSD training needs at least one box per image)")


def _check_sizes(hp: Hyperparameters, train: ChannelData) -> None:
    if hp.mini_batch_size > len(train.dataset):
        raise HyperparameterError(f"mini_batch_size={hp.mini_batch_size} is larger than the "
                                  f"{len(train.dataset)} training images; lower it")
    if hp.num_training_samples and hp.num_training_samples != len(train.dataset):
        say(f"note: num_training_samples={hp.num_training_samples} but the train channel holds "
            f"{len(train.dataset)} images; using the data")


def _seed(seed: int) -> None:
    mx.random.seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def _network(hp: Hyperparameters, classes: list[str], job: Job, workdir: Path) -> mx.gluon.HybridBlock:
    """The network, started from (first that applies): an earlier model of the same classes (channel `model`:
    incremental training), an earlier model of other classes (a `pretrained` channel holding a model:
    transfer), ImageNet weights (use_pretrained_model=1: train/weights.py), or nothing. Then frozen layers."""
    size, shape_label = hp.image_shape[-1], ",".join(map(str, hp.image_shape))
    channel = job.channels.get("pretrained")
    earlier = None if "model" in job.channels else transfer.earlier_model(channel, workdir)
    if "model" in job.channels:
        net = models.build(hp.task, hp.network, classes, size, log=say, shape_label=shape_label)
        earlier = open_model_dir(job.channels["model"], workdir / "model", require=(TRAINING_STATE,))
        if list(earlier.classes) != classes:
            raise DataError(f"the model channel's classes {list(earlier.classes)} differ from the data's {classes}; "
                            "incremental training needs the same classes in the same order (to start from a model "
                            "of other classes, give it as the 'pretrained' channel)")
        transfer.carry_over(net, earlier, channel="model")
        say(f"incremental training: starting from {earlier.path}")
    elif earlier is not None:
        transfer.check_same_network(earlier, hp.task, hp.network)
        if hp.task == "detection":
            net = transfer.detector(earlier, hp.network, classes, size, log=say)
        else:
            net = transfer.classifier(earlier, hp.network, classes, size, shape_label, log=say)
    else:
        net = _imagenet_or_shipped_start(hp, classes, channel, size, shape_label)
    if hp.task == "detection" and hp.freeze_layer_pattern:
        say(f"freeze_layer_pattern {hp.freeze_layer_pattern!r}: {models.freeze(net, hp.freeze_layer_pattern)} "
            "parameters stay as they are")
    return net


def _imagenet_or_shipped_start(hp: Hyperparameters, classes: list[str], channel: Path | None, size: int,
                               shape_label: str) -> mx.gluon.HybridBlock:
    """ImageNet weights when use_pretrained_model=1 finds them; else the synthetic-card base shipped with the
    package for this network (the log says so); else random initialisation (use_pretrained_model=0)."""
    found = None
    if hp.use_pretrained_model:
        name = models.weights_name(hp.task, hp.network)
        try:
            found = weights.find(name, channel, log=say)
        except weights.WeightsError as e:
            base = transfer.shipped_base(hp.network)
            if base is None:
                raise weights.WeightsError(f"{e} (a synthetic-card base model ships with magiccards for network "
                                           f"{' and '.join(transfer.shipped_networks())})") from None
            kind = "detector" if hp.task == "detection" else "classifier"
            say(f"no ImageNet weights for {name} here (not in a pretrained channel, the image or the model store, "
                f"and no download from {weights.repository()}): starting from the synthetic-card base {kind} "
                f"shipped with magiccards ({base.name}; set use_pretrained_model=0 to start from random weights)")
            if hp.task == "detection":
                return transfer.detector(open_model_dir(base), hp.network, classes, size, log=say)
            return transfer.classifier(open_model_dir(base), hp.network, classes, size, shape_label, log=say)
    return models.build(hp.task, hp.network, classes, size, weights=found, log=say, shape_label=shape_label)


def _kvstore(job: Job, hp: Hyperparameters):
    """(kvstore, shard, shards): the parameter server's `dist_sync` worker on several hosts, else hp.kv_store."""
    if not job.distributed:
        return hp.kv_store, 0, 1
    kv = ParameterServer(list(job.hosts), job.current_host, job.interface).start()
    return kv, kv.rank, kv.num_workers


def _recipe(hp, net, train, val, classes, ctx, part=0, parts=1):
    if hp.task == "classification":
        from .classification import ClassificationRecipe as Recipe
    else:
        from .detection import DetectionRecipe as Recipe
    return Recipe(net, None, train, val, hp, classes, ctx, num_workers=hp.num_workers, part=part, parts=parts)


@contextlib.contextmanager
def _out_of_memory_is_a_user_error():
    message = "out of memory: lower mini_batch_size or image_shape, or use a larger instance"
    try:
        yield
    except mx.base.MXNetError as e:
        if any(sign in str(e).lower() for sign in ("out of memory", "bad_alloc", "failed to allocate")):
            raise UserError(message) from None
        if "FileStream.Write incomplete" in str(e):  # MXNet's save on a full disk
            raise UserError("cannot write checkpoints or the model: the disk is full; free space or give the job "
                            "a larger volume") from None
        raise
    except MemoryError:
        raise UserError(message) from None


def _periodic_export(hp: Hyperparameters, net, model_dir: Path):
    """With an explicit checkpoint_frequency, keep <prefix>-NNNN.params every N epochs, like the built-ins."""
    if "checkpoint_frequency" not in hp.given:
        return None

    def save(epoch: int) -> None:
        if (epoch + 1) % hp.checkpoint_frequency == 0:
            write_graph(net, model_dir, hp.task, hp.image_shape, epoch=epoch + 1, hybridize=False)
    return save


def _final_report(hp: Hyperparameters, recipe, classes, paths: Paths, state: dict) -> dict:
    metrics = {"best_epoch": state.get("best_epoch"), "epochs_run": len(state["history"])}
    if recipe.val_loader is None:
        metrics["train_score"] = state.get("best")
        return metrics
    metrics.update(recipe.evaluate())
    if hp.task == "classification":
        metrics["per_class_accuracy"] = write_confusion(paths.output_dir, recipe.confusion, classes)
    else:
        metrics["per_class_ap"] = write_per_class_ap(paths.output_dir, classes, recipe.per_class_ap)
    return metrics
