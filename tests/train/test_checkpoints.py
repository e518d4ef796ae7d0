"""Checkpoints: written whole, the latest found, the oldest pruned, restored into network and trainer."""
import json

import mxnet as mx
import numpy as np
from magiccards.train.checkpoints import KEEP, Checkpoints


def _net_and_trainer(seed):
    mx.random.seed(seed)
    net = mx.gluon.nn.Dense(3, in_units=4)
    net.initialize()
    trainer = mx.gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 0.1})
    with mx.autograd.record():
        loss = net(mx.nd.ones((2, 4))).sum()
    loss.backward()
    trainer.step(2)
    return net, trainer


def test_save_latest_prune_and_restore(tmp_path):
    net, trainer = _net_and_trainer(0)
    ckpts = Checkpoints(tmp_path)
    for epoch in range(1, 5):
        ckpts.save(net, trainer, {"epoch": epoch, "batch": 0, "history": [epoch]})
    assert [p.name for p in ckpts.all()] == [f"epoch-000{e}-batch-000000" for e in range(5 - KEEP, 5)]
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())
    path, state = ckpts.latest()
    assert path.name == "epoch-0004-batch-000000" and state["history"] == [4]
    other, other_trainer = _net_and_trainer(1)
    Checkpoints.restore(path, other, other_trainer)
    np.testing.assert_array_equal(other.weight.data().asnumpy(), net.weight.data().asnumpy())
    assert other_trainer._updaters[0].states.keys() == trainer._updaters[0].states.keys()


def test_an_unreadable_state_falls_back_to_the_previous_checkpoint(tmp_path):
    net, trainer = _net_and_trainer(0)
    ckpts = Checkpoints(tmp_path)
    ckpts.save(net, trainer, {"epoch": 1, "batch": 0})
    ckpts.save(net, trainer, {"epoch": 2, "batch": 0})
    (tmp_path / "epoch-0002-batch-000000" / "state.json").write_text("{trunc")
    path, state = ckpts.latest()
    assert path.name == "epoch-0001-batch-000000" and state == {"epoch": 1, "batch": 0}


def test_distributed_checkpoints_keep_no_optimizer_states(tmp_path):
    net, trainer = _net_and_trainer(0)
    path = Checkpoints(tmp_path, optimizer_states=False).save(net, trainer, {"epoch": 1, "batch": 3})
    assert sorted(p.name for p in path.iterdir()) == ["model.params", "state.json"]
    assert json.loads((path / "state.json").read_text()) == {"epoch": 1, "batch": 3}
