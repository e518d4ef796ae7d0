"""export writes a model directory that open_model_dir reads and MXNet loads with the same outputs."""
import mxnet as mx
import numpy as np
from magiccards.train import models
from magiccards.train.export import export, sample_input

from magiccards.model_dir import TRAINING_STATE, open_model_dir


def test_export_round_trips_through_the_contract(tmp_path):
    net = models.build("classification", "resnet18_v1b", ["a", "b", "c"], 32)
    symbol = export(net, tmp_path / "model", task="classification", network="resnet18_v1b", classes=["a", "b", "c"],
                    image_shape=(3, 32, 32), hyperparameters={"epochs": "1"}, metrics={"validation_accuracy": 0.9},
                    dataset_sizes={"train": 8, "validation": 4})
    m = open_model_dir(tmp_path / "model", require=(TRAINING_STATE,))
    assert symbol == m.symbol_file and m.classes == ("a", "b", "c") and m.input_shape == (3, 32, 32)
    assert m.card["metrics"] == {"validation_accuracy": 0.9} and m.card["framework"]["mxnet"] == mx.__version__
    loaded = mx.gluon.SymbolBlock.imports(str(m.symbol_file), ["data"], str(m.params_file))
    x = mx.nd.array(np.random.default_rng(0).normal(size=(2, 3, 32, 32)))
    np.testing.assert_allclose(loaded(x).asnumpy(), net(x).asnumpy(), rtol=1e-5, atol=1e-5)
    again = models.build("classification", "resnet18_v1b", ["a", "b", "c"], 32)
    again.load_parameters(str(m.training_state_file))
    np.testing.assert_allclose(again(x).asnumpy(), net(x).asnumpy(), rtol=1e-5, atol=1e-5)


def test_the_sample_input_follows_the_networks_dtype():
    net = models.build("classification", "resnet18_v1b", ["a", "b"], 32)
    net.cast("float16")
    x = sample_input(net, (3, 32, 32))
    assert x.dtype == np.float16 and x.shape == (1, 3, 32, 32) and x.context == mx.cpu()
