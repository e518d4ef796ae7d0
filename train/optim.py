"""Optimizer and learning-rate schedule from the built-in hyperparameters."""
from __future__ import annotations

import mxnet as mx

from .hyperparameters import Hyperparameters


def lr_scheduler(hp: Hyperparameters, steps_per_epoch: int) -> mx.lr_scheduler.LRScheduler:
    """Step decay at `lr_scheduler_step` epochs by `lr_scheduler_factor`, after `warmup_epochs` of linear warm-up."""
    warmup = hp.warmup_epochs * steps_per_epoch
    steps = [e * steps_per_epoch for e in hp.lr_scheduler_step if e * steps_per_epoch > warmup]
    if steps:
        return mx.lr_scheduler.MultiFactorScheduler(step=steps, factor=hp.lr_scheduler_factor, base_lr=hp.learning_rate,
                                                    warmup_steps=warmup, warmup_begin_lr=0.0)
    return mx.lr_scheduler.FactorScheduler(step=10 ** 9, factor=1.0, base_lr=hp.learning_rate,
                                           warmup_steps=warmup, warmup_begin_lr=0.0)


def optimizer_params(hp: Hyperparameters, steps_per_epoch: int) -> dict:
    params = {"learning_rate": hp.learning_rate, "wd": hp.weight_decay,
              "lr_scheduler": lr_scheduler(hp, steps_per_epoch)}
    if hp.optimizer in ("sgd", "nag"):
        params["momentum"] = hp.momentum
    elif hp.optimizer == "adam":
        params.update(beta1=hp.beta_1, beta2=hp.beta_2, epsilon=hp.eps)
    elif hp.optimizer == "rmsprop":
        params.update(gamma1=hp.gamma, epsilon=hp.eps)
    if hp.precision_dtype == "float16":
        params["multi_precision"] = True
    return params


def trainer(params, hp: Hyperparameters, steps_per_epoch: int, kvstore: str = "device") -> mx.gluon.Trainer:
    return mx.gluon.Trainer(params, hp.optimizer, optimizer_params(hp, steps_per_epoch), kvstore=kvstore)
