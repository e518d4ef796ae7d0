"""Optimizer and schedule from the built-in hyperparameters: warm-up, steps, factor, per-optimizer options."""
import pytest
from magiccards.train import optim
from magiccards.train.hyperparameters import resolve


def _lr(hp, steps_per_epoch, update):
    return optim.lr_scheduler(hp, steps_per_epoch)(update)


def test_step_decay_after_linear_warmup():
    hp = resolve({"learning_rate": "0.1", "lr_scheduler_step": "3,5", "lr_scheduler_factor": "0.5",
                  "warmup_epochs": "1"}, "classification")
    assert _lr(hp, 10, 0) == pytest.approx(0.0)
    assert _lr(hp, 10, 5) == pytest.approx(0.05)  # halfway through the warm-up epoch
    assert _lr(hp, 10, 15) == pytest.approx(0.1)
    assert _lr(hp, 10, 31) == pytest.approx(0.05)
    assert _lr(hp, 10, 51) == pytest.approx(0.025)


def test_constant_without_steps():
    hp = resolve({"learning_rate": "0.01"}, "detection")
    assert _lr(hp, 7, 0) == _lr(hp, 7, 10_000) == pytest.approx(0.01)


@pytest.mark.parametrize("name, keys", [("sgd", {"momentum"}), ("nag", {"momentum"}),
                                        ("adam", {"beta1", "beta2", "epsilon"}), ("rmsprop", {"gamma1", "epsilon"})])
def test_each_optimizer_gets_its_own_options(name, keys):
    hp = resolve({"optimizer": name, "weight_decay": "0.001"}, "classification")
    params = optim.optimizer_params(hp, 5)
    assert keys <= set(params) and params["wd"] == 0.001
    trainer = optim.trainer(_params(), hp, 5, kvstore="local")
    assert type(trainer._optimizer).__name__.lower() == name


def _params():
    import mxnet as mx
    net = mx.gluon.nn.Dense(2, in_units=3)
    net.initialize()
    return net.collect_params()
