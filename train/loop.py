"""The epoch loop shared by both tasks: resume, checkpoints, SIGTERM, best model, early stopping.

A task recipe (classification.py, detection.py) supplies the batches, the training step, the
epoch's training metrics and the validation; this module decides what happens around them.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from pathlib import Path

import mxnet as mx

from magiccards.errors import TrainingStopped, UserError
from magiccards.files import atomic_path

from .checkpoints import Checkpoints
from .hyperparameters import Hyperparameters
from .reporting import epoch_lines, say, write_history

LOG_INTERVAL = 20  # batches between progress lines


class StopFlag:
    """Turns SIGTERM into a flag the loop checks after every step."""

    def __init__(self):
        self.requested = False
        self._pid = os.getpid()
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        if os.getpid() != self._pid:  # a forked data-loader worker inherited the handler: just die
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        self.requested = True
        say("SIGTERM received: finishing the current step, then writing a checkpoint")

    def close(self):
        signal.signal(signal.SIGTERM, self._previous)


@dataclasses.dataclass
class Paths:
    model_dir: Path
    output_dir: Path
    checkpoints: Path


def fit(recipe, net, trainer, hp: Hyperparameters, paths: Paths, host: str = "algo-1",
        is_master: bool = True, on_epoch=None, distributed: bool = False, fingerprint: dict | None = None) -> dict:
    """Train `hp.epochs` epochs (or until early stopping); return the final state with the best score.

    The best parameters (by the recipe's validation score, else the training score) are kept in
    `checkpoints/best.params`; `on_epoch(epoch)` is called after each epoch's checkpoint. Checkpoints
    record `fingerprint` (what the job trains on and with): a checkpoint of another job is refused, and
    a finished job's state comes back with `already_done` set instead of training again.
    """
    ckpts = Checkpoints(paths.checkpoints, optimizer_states=not distributed)
    best_file = paths.checkpoints / "best.params"
    state = {"epoch": 0, "batch": 0, "history": [], "best": None, "best_epoch": None, "bad_epochs": 0,
             "seed": hp.seed}
    saved = _resume(ckpts, net, trainer, hp, paths, fingerprint)
    if saved is not None:
        state.update(saved)
        if state.get("finished"):
            state["already_done"] = True
            say(f"this job is already done (checkpoint of epoch {state['epoch']}): nothing to train")
        else:
            say(f"Resuming from checkpoint epoch-{state['epoch']:04d}-batch-{state['batch']:06d} "
                f"(epoch {state['epoch']}, batch {state['batch']})")
    state["task"], state["optimizer"], state["fingerprint"] = hp.task, hp.optimizer, fingerprint
    stop = StopFlag()
    try:
        for epoch in range(state["epoch"], hp.epochs if not state.get("finished") else 0):
            start_batch = state["batch"] if epoch == state["epoch"] else 0
            recipe.reset_metrics()
            started, samples = time.perf_counter(), 0
            for b, batch in recipe.batches(epoch, start_batch):
                samples += recipe.step(batch)
                if b == start_batch or (b + 1) % LOG_INTERVAL == 0:  # MXNet Speedometer's format
                    say(f"Epoch[{epoch}] Batch [{b + 1}]\tSpeed: {samples / max(time.perf_counter() - started, 1e-9):.2f} "
                        "samples/sec")
                if stop.requested:
                    state.update(epoch=epoch, batch=b + 1)
                    where = ckpts.save(net, trainer, state)
                    raise TrainingStopped(f"training stopped by SIGTERM at epoch {epoch}, batch {b + 1}; "
                                          f"checkpoint {where.name} written; run the job again to resume")
            seconds = time.perf_counter() - started
            record = {"epoch": epoch, "seconds": seconds, "speed": samples / max(seconds, 1e-9), **recipe.train_metrics()}
            validating = time.perf_counter()
            record.update(recipe.evaluate(), validation_seconds=time.perf_counter() - validating)
            for line in epoch_lines(hp.task, epoch, record, host):
                say(line)
            score = record.get(recipe.score_key, record.get(recipe.train_score_key))
            state["history"].append(record)
            improved = state["best"] is None or score > state["best"] * (1 + hp.early_stopping_tolerance) \
                or (state["best"] == 0 and score > 0)
            if improved:
                state.update(best=score, best_epoch=epoch, bad_epochs=0)
                with atomic_path(best_file) as tmp:
                    net.save_parameters(str(tmp))
            else:
                state["bad_epochs"] += 1
            state.update(epoch=epoch + 1, batch=0)
            last = epoch + 1 == hp.epochs
            if (epoch + 1) % hp.checkpoint_frequency == 0 or last or stop.requested:
                ckpts.save(net, trainer, state)
            if is_master:
                write_history(paths.output_dir, state["history"], hp.task)
            if on_epoch:
                on_epoch(epoch)
            if stop.requested:
                raise TrainingStopped(f"training stopped by SIGTERM after epoch {epoch}; checkpoint written; "
                                      "run the job again to resume")
            if (hp.early_stopping and epoch + 1 >= hp.early_stopping_min_epochs
                    and state["bad_epochs"] >= hp.early_stopping_patience):
                say(f"Early stopping after epoch {epoch}: no improvement for {state['bad_epochs']} epochs "
                    f"(best {recipe.score_key} {state['best']:.6f} at epoch {state['best_epoch']})")
                break
        if not state.get("finished"):
            state["finished"] = True  # a rerun of this job (or a restored spot job) then trains no further
            ckpts.save(net, trainer, state)
    finally:
        stop.close()
    if best_file.is_file():
        if distributed:
            _copy_parameters(net, best_file)
        else:
            net.load_parameters(str(best_file))
    return state


def _resume(ckpts: Checkpoints, net, trainer, hp: Hyperparameters, paths: Paths, fingerprint: dict | None):
    """The saved state of the newest usable checkpoint, restored into `net` and `trainer`; None without one.

    A checkpoint of another job (task, optimizer, data or hyperparameters) is a UserError; a damaged one
    (truncated parameters) is passed over for the one before it, and the log says so."""
    candidates = ckpts.all()
    for n, path in enumerate(reversed(candidates)):
        try:
            saved = json.loads((path / "state.json").read_text())
        except (OSError, ValueError):
            say(f"checkpoint {path.name} is damaged (its state.json cannot be read); trying the one before it")
            continue
        _check_same_job(path, saved, hp, paths, fingerprint)
        try:
            Checkpoints.restore(path, net, trainer)
        except (AssertionError, ValueError, mx.base.MXNetError) as e:
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:240]
            if saved.get("fingerprint") is not None and n + 1 < len(candidates):  # the same job: a damaged file
                say(f"checkpoint {path.name} is damaged ({reason}); falling back to the one before it")
                continue
            raise UserError(f"checkpoint {path.name} in {paths.checkpoints} does not fit this job's network "
                            f"({reason}); it was written by another job: clear the checkpoint location "
                            "(or use another job folder)") from None
        return saved
    return None


def _check_same_job(path: Path, saved: dict, hp: Hyperparameters, paths: Paths, fingerprint: dict | None) -> None:
    where = f"checkpoint {path.name} in {paths.checkpoints}"
    advice = ("train into a new --job-dir, or pass --fresh to move the old checkpoints aside (in SageMaker: "
              "a new checkpoint S3 location)")
    if saved.get("task") not in (None, hp.task):
        raise UserError(f"checkpoint {path.name} is from a {saved.get('task')} job; clear the checkpoint location")
    if saved.get("optimizer") not in (None, hp.optimizer):  # its saved states would bring the old optimizer back
        raise UserError(f"{where} was written with optimizer={saved['optimizer']}, this job asks for {hp.optimizer}; "
                        "resume with the same optimizer, or clear the checkpoint location (or use another job folder)")
    old = saved.get("fingerprint")
    if old is None or fingerprint is None or old == fingerprint:
        return
    changes = [f"the {split} data" for split in sorted(set(old["data"]) | set(fingerprint["data"]))
               if old["data"].get(split) != fingerprint["data"].get(split)]
    before, now = old["hyperparameters"], fingerprint["hyperparameters"]
    changes += [f"{k} {before.get(k, '(unset)')} -> {now.get(k, '(unset)')}"
                for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]
    raise UserError(f"{where} belongs to another job (changed: {', '.join(changes)}); {advice}")


def _copy_parameters(net, params_file: Path) -> None:
    """Load saved values into the existing arrays (a distributed trainer forbids replacing them)."""
    saved = mx.nd.load(str(params_file))
    for name, param in net._collect_params_with_prefix().items():
        for array in param.list_data():
            array[:] = saved[name].as_in_context(array.context)
