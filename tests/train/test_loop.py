"""loop.fit around a small real recipe: best model kept, early stopping, checkpoints, resume."""
import mxnet as mx
import numpy as np
from magiccards.train.checkpoints import Checkpoints
from magiccards.train.hyperparameters import resolve
from magiccards.train.loop import Paths, fit


class LinearRecipe:
    """A linear classifier on fixed random data: what loop.fit needs of a task recipe, computed for real."""
    score_key, train_score_key = "validation_accuracy", "train_accuracy"
    val_loader = True

    def __init__(self, net, trainer, scores=None):
        rng = np.random.default_rng(0)
        self.x = mx.nd.array(rng.normal(size=(64, 4)))
        self.y = mx.nd.array((self.x.asnumpy() @ np.array([1.0, -2.0, 0.5, 0.0]) > 0).astype(np.float32))
        self.net, self.trainer, self.scores, self.evaluations = net, trainer, scores, 0
        self.loss = mx.gluon.loss.SoftmaxCrossEntropyLoss()

    def reset_metrics(self):
        self.seen = 0

    def batches(self, epoch, start):
        for b in range(start, 4):
            yield b, (self.x[b * 16:(b + 1) * 16], self.y[b * 16:(b + 1) * 16])

    def step(self, batch):
        with mx.autograd.record():
            loss = self.loss(self.net(batch[0]), batch[1])
        loss.backward()
        self.trainer.step(16)
        return 16

    def train_metrics(self):
        return {"train_accuracy": 0.0, "train_loss": 0.0}

    def evaluate(self):
        self.evaluations += 1
        if self.scores is not None:  # a scripted validation curve
            return {"validation_accuracy": self.scores[self.evaluations - 1], "validation_top_k": 1.0}
        predicted = self.net(self.x).argmax(axis=1)
        return {"validation_accuracy": float((predicted == self.y).mean().asscalar()), "validation_top_k": 1.0}


def _setup(tmp_path, scores=None, **hp):
    mx.random.seed(0)
    net = mx.gluon.nn.Dense(2, in_units=4)
    net.initialize()
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.5})
    raw = {"epochs": "6", "optimizer": "sgd", **{k: str(v) for k, v in hp.items()}}
    paths = Paths(tmp_path / "model", tmp_path / "output", tmp_path / "checkpoints")
    return net, trainer, resolve(raw, "classification"), paths, LinearRecipe(net, trainer, scores)


def test_fit_learns_keeps_the_best_and_writes_history(tmp_path):
    net, trainer, hp, paths, recipe = _setup(tmp_path)
    state = fit(recipe, net, trainer, hp, paths)
    assert len(state["history"]) == 6 and state["best"] >= 0.9
    assert (paths.output_dir / "metrics.json").is_file() and (paths.output_dir / "curves.png").is_file()
    assert (paths.checkpoints / "best.params").is_file()
    assert Checkpoints(paths.checkpoints).latest()[1]["epoch"] == 6


def test_early_stopping_and_the_best_epochs_weights(tmp_path):
    scores = [0.5, 0.9, 0.8, 0.7, 0.6, 0.6]
    net, trainer, hp, paths, recipe = _setup(tmp_path, scores, early_stopping="True", early_stopping_min_epochs=2,
                                             early_stopping_patience=2)
    saved = {}
    state = fit(recipe, net, trainer, hp, paths,
                on_epoch=lambda e: saved.setdefault(e, net.weight.data().asnumpy().copy()))
    assert len(state["history"]) == 4 and state["best_epoch"] == 1 and state["best"] == 0.9
    np.testing.assert_array_equal(net.weight.data().asnumpy(), saved[1])  # the best epoch's weights came back


def test_a_finished_run_resumes_at_its_end(tmp_path):
    net, trainer, hp, paths, recipe = _setup(tmp_path)
    fit(recipe, net, trainer, hp, paths)
    net2, trainer2, hp2, _, recipe2 = _setup(tmp_path)
    state = fit(recipe2, net2, trainer2, hp2, paths)
    assert recipe2.evaluations == 0 and len(state["history"]) == 6
    np.testing.assert_array_equal(net2.weight.data().asnumpy(), net.weight.data().asnumpy())
