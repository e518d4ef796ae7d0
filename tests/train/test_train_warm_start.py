"""Warm starts: base weights from a `pretrained` channel or GluonCV's model store, and incremental
training from an earlier job's model (`model` channel)."""
import re
import shutil
import tarfile

import mxnet as mx
import numpy as np
import pytest
from gluoncv import model_zoo
from gluoncv.model_zoo.model_store import short_hash
from magiccards.container.local_run import run_local

from magiccards.errors import TrainingFailed

pytestmark = pytest.mark.slow

FAST = {"network": "resnet18_v1b", "image_shape": "3,32,32", "epochs": "1", "mini_batch_size": "8", "seed": "1"}
# a learning rate this small leaves the loaded weights in place, so the export shows where they came from
FROZEN = {"optimizer": "adam", "learning_rate": "1e-12", "weight_decay": "0"}


def _imagenet_style_weights(network: str, path):
    """A 1000-class GluonCV `network` with random weights, saved the way GluonCV's model store saves them."""
    net = model_zoo.get_model(network)
    net.initialize(mx.init.Normal(0.5))
    net(mx.nd.zeros((1, 3, 64, 64)))
    path.parent.mkdir(parents=True, exist_ok=True)
    net.save_parameters(str(path))
    name, param = next(iter(net.collect_params().items()))  # the first convolution
    return name[len(net.prefix):], param.data().asnumpy()


def _exported(model_dir, prefix: str, suffix: str, scope: str = r"[^_]+_") -> np.ndarray:
    """The exported parameter named `suffix` after the block prefixes matched by `scope` ('resnetv1b0_')."""
    params = mx.nd.load(str(model_dir / f"{prefix}-0000.params"))
    found = [v for k, v in params.items() if re.fullmatch(r"(?:arg|aux):" + scope + re.escape(suffix), k)]
    assert len(found) == 1, sorted(params)[:5]
    return found[0].asnumpy()


def test_pretrained_channel_seeds_the_classifier(packed_cards, tmp_path):
    suffix, weights = _imagenet_style_weights("resnet18_v1b", tmp_path / "weights" / "resnet18_v1b.params")
    lines = []
    model = run_local(packed_cards, tmp_path / "job", dict(FAST, use_pretrained_model="1", **FROZEN),
                      extra_channels={"pretrained": tmp_path / "weights"}, log=lines.append)
    assert any(re.search(r"pretrained: \d+ parameters from .*resnet18_v1b.params", line) for line in lines), lines
    np.testing.assert_allclose(_exported(model, "image-classification", suffix), weights, rtol=1e-5, atol=1e-6)


def test_model_store_cache_seeds_the_classifier(packed_cards, tmp_path, monkeypatch):
    home = tmp_path / "mxnet-home"
    store_name = f"resnet18_v1b-{short_hash('resnet18_v1b')}.params"
    suffix, weights = _imagenet_style_weights("resnet18_v1b", home / "models" / store_name)
    monkeypatch.setenv("MXNET_HOME", str(home))  # where GluonCV keeps ~/.mxnet/models
    lines = []
    model = run_local(packed_cards, tmp_path / "job", dict(FAST, use_pretrained_model="1", **FROZEN), log=lines.append)
    assert any(store_name in line for line in lines), lines
    np.testing.assert_allclose(_exported(model, "image-classification", suffix), weights, rtol=1e-5, atol=1e-6)


def test_pretrained_channel_seeds_the_ssd_base(packed_scenes, tmp_path):
    suffix, weights = _imagenet_style_weights("mobilenet0.25", tmp_path / "weights" / "mobilenet0.25.params")
    hp = {"network": "ssd_300_mobilenet0.25", "image_shape": "128", "epochs": "1", "mini_batch_size": "16",
          "use_pretrained_model": "1", **FROZEN}
    lines = []
    model = run_local(packed_scenes, tmp_path / "job", hp, extra_channels={"pretrained": tmp_path / "weights"},
                      log=lines.append)
    assert any(re.search(r"pretrained: \d+ base parameters from .*mobilenet0.25.params", line) for line in lines)
    np.testing.assert_allclose(_exported(model, "model_algo_1", suffix, scope=r"ssd\d*_mobilenet\d*_"), weights, rtol=1e-5, atol=1e-6)


def test_incremental_training_continues_from_model_tar_gz(packed_cards, tmp_path):
    first = run_local(packed_cards, tmp_path / "first", dict(FAST, epochs="2", optimizer="adam",
                                                              learning_rate="0.002"), log=lambda line: None)
    channel = tmp_path / "model-channel"
    channel.mkdir()
    with tarfile.open(channel / "model.tar.gz", "w:gz") as tar:  # what SageMaker hands the next job
        for f in first.iterdir():
            tar.add(f, arcname=f.name)
    second = run_local(packed_cards, tmp_path / "second", dict(FAST, **FROZEN), extra_channels={"model": channel},
                       log=lambda line: None)
    for suffix in ("conv0_weight", "dense0_weight"):
        np.testing.assert_allclose(_exported(second, "image-classification", suffix),
                                   _exported(first, "image-classification", suffix), rtol=1e-5, atol=1e-6)


def test_incremental_training_with_other_classes_is_an_error(packed_cards, tmp_path):
    first = run_local(packed_cards, tmp_path / "first", FAST, log=lambda line: None)
    data = tmp_path / "renamed"
    shutil.copytree(packed_cards, data)
    classes = (data / "classes.txt").read_text().split()
    (data / "classes.txt").write_text("\n".join(reversed(classes)) + "\n")
    with pytest.raises(TrainingFailed, match="incremental training needs the same classes in the same order"):
        run_local(data, tmp_path / "second", FAST, extra_channels={"model": first}, log=lambda line: None)


def test_freeze_layer_pattern_keeps_the_matching_weights(packed_scenes, tmp_path):
    hp = {"network": "ssd_300_mobilenet0.25", "image_shape": "128", "epochs": "1", "mini_batch_size": "16",
          "use_pretrained_model": "0", "optimizer": "adam", "learning_rate": "0.01", "seed": "3"}
    first = run_local(packed_scenes, tmp_path / "first", hp, log=lambda line: None)
    lines = []
    second = run_local(packed_scenes, tmp_path / "second", dict(hp, freeze_layer_pattern=r"mobilenet0_conv[01]_weight"),
                       extra_channels={"model": first}, log=lines.append)
    assert r"freeze_layer_pattern 'mobilenet0_conv[01]_weight': 2 parameters stay as they are" in lines
    scope = r"ssd\d*_mobilenet\d*_"
    for frozen in ("conv0_weight", "conv1_weight"):
        np.testing.assert_array_equal(_exported(second, "model_algo_1", frozen, scope),
                                      _exported(first, "model_algo_1", frozen, scope))
    assert not np.allclose(_exported(second, "model_algo_1", "conv2_weight", scope),
                           _exported(first, "model_algo_1", "conv2_weight", scope))  # the rest trains on
