"""Where a network starts from: ImageNet weights found in their lookup order (the pretrained channel, the image,
the model store, GluonCV's download from a local HTTP server laid out like GluonCV's repository), and transfer
from an earlier model of the same network with other classes."""
from __future__ import annotations

import functools
import hashlib
import http.server
import threading
import zipfile
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
from magiccards.train import models, weights

from magiccards.errors import DataError
from tests.helpers import run_cli

NAME = "mobilenet0.25"  # the base of ssd_300_mobilenet0.25; a small real network


@pytest.fixture(scope="module")
def params_file(tmp_path_factory) -> Path:
    """Real mobilenet0.25 parameters (random, not ImageNet's)."""
    from gluoncv import model_zoo

    net = model_zoo.get_model(NAME, pretrained=False)
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, 64, 64)))
    path = tmp_path_factory.mktemp("weights") / "mobilenet.params"
    net.save_parameters(str(path))
    return path


@pytest.fixture()
def trusted(monkeypatch, params_file) -> str:
    """GluonCV's checksum table holding this file's SHA-1 (GluonCV's real ImageNet file is not on this machine),
    as if GluonCV published it; returns the model-store file name that follows from it."""
    from gluoncv.model_zoo import model_store

    sha1 = hashlib.sha1(params_file.read_bytes()).hexdigest()
    monkeypatch.setitem(model_store._model_sha1, NAME, sha1)
    return f"{NAME}-{sha1[:8]}.params"


@pytest.fixture()
def repository(tmp_path, params_file):
    """A local HTTP server laid out like GluonCV's repository (gluon/models/<name>-<hash>.zip), serving the test
    file under GluonCV's real hash (a mismatch) and under its own SHA-1's (a match for `trusted`)."""
    from gluoncv.model_zoo import model_store

    root = tmp_path / "repo"
    (root / "gluon" / "models").mkdir(parents=True)
    own = hashlib.sha1(params_file.read_bytes()).hexdigest()[:8]
    for short in {model_store._model_sha1[NAME][:8], own}:
        with zipfile.ZipFile(root / "gluon" / "models" / f"{NAME}-{short}.zip", "w") as zf:
            zf.write(params_file, f"{NAME}-{short}.params")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


def test_lookup_order_channel_image_store_then_download(tmp_path, monkeypatch, params_file, repository, trusted):
    channel, image, home = tmp_path / "channel", tmp_path / "image", tmp_path / "mxnet-home"
    monkeypatch.setattr(weights, "IMAGE_STORE", image)
    monkeypatch.setenv("MXNET_HOME", str(home))
    monkeypatch.setenv("MXNET_GLUON_REPO", repository)
    for folder in (channel, image, home / "models"):
        folder.mkdir(parents=True)
        (folder / trusted).write_bytes(params_file.read_bytes())
    said = []
    assert weights.find(NAME, channel, log=said.append) == channel / trusted
    assert "from the pretrained channel" in said[-1]
    (channel / trusted).unlink()
    assert weights.find(NAME, channel, log=said.append) == image / trusted
    assert "from the image's weights" in said[-1]
    (image / trusted).unlink()
    assert weights.find(NAME, channel, log=said.append) == home / "models" / trusted
    assert "from the job's GluonCV model store" in said[-1]
    (home / "models" / trusted).unlink()
    found = weights.find(NAME, None, log=said.append)  # GluonCV's own download code, SHA-1 checked
    assert found == home / "models" / trusted and found.read_bytes() == params_file.read_bytes()
    assert f"downloaded from {repository}" in said[-1]
    assert not list((home / "models").glob("*.zip"))


def test_offline_without_weights_names_every_place(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "IMAGE_STORE", tmp_path / "image")
    monkeypatch.setenv("MXNET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MXNET_GLUON_REPO", "http://127.0.0.1:9/")  # nothing listens on the discard port
    with pytest.raises(weights.WeightsError) as info:
        weights.find(NAME, tmp_path / "channel", log=lambda line: None)
    text = str(info.value)
    for part in ("the pretrained channel", "the image's weights", "the job's GluonCV model store",
                 "cannot download the weights of mobilenet0.25 from http://127.0.0.1:9/",
                 f"magiccards weights {NAME} --out DIR", "use_pretrained_model=0"):
        assert part in text, part


def test_weights_command_refuses_a_checksum_mismatch_and_an_unreachable_repository(tmp_path, monkeypatch,
                                                                                   repository):
    """`magiccards weights` as a user runs it: the served file is not GluonCV's ImageNet file, so its SHA-1 is
    wrong: refused, nothing left behind."""
    monkeypatch.setenv("MXNET_GLUON_REPO", repository)
    out = tmp_path / "pretrained"
    done = run_cli("weights", NAME, "--out", out)
    assert done.returncode == 1 and "do not match GluonCV's SHA-1 checksum" in done.stderr
    assert "Traceback" not in done.stderr and not list(out.glob("*"))
    monkeypatch.setenv("MXNET_GLUON_REPO", "http://127.0.0.1:9/")
    done = run_cli("weights", NAME, "--out", out)
    assert done.returncode == 1 and "cannot download the weights of mobilenet0.25 from http://127.0.0.1:9/" \
        in done.stderr
    unknown = run_cli("weights", "resnet7_v9", "--out", out)
    assert unknown.returncode == 1 and "GluonCV publishes no pretrained weights for 'resnet7_v9'" in unknown.stderr


def test_weights_command_fetches_with_a_progress_bar(tmp_path, monkeypatch, params_file, repository, trusted,
                                                    capsys):
    from magiccards.cli import main

    monkeypatch.setenv("MXNET_GLUON_REPO", repository)
    monkeypatch.setenv("MXNET_HOME", str(tmp_path / "elsewhere"))  # --out wins over MXNET_HOME
    out = tmp_path / "pretrained"
    assert main(["weights", NAME, "--out", str(out)]) == 0
    fetched = list(out.glob("*.params"))
    assert [p.name for p in fetched] == [trusted] and fetched[0].read_bytes() == params_file.read_bytes()
    captured = capsys.readouterr()
    assert "KB" in captured.err and f"--pretrained {out}" in captured.out  # tqdm's bar, then how to use it
    assert not (tmp_path / "elsewhere").exists()


# ---------------------------------------------------------------------------------------------- transfer
@pytest.fixture(scope="module")
def three_class_scenes(tmp_path_factory, detector) -> Path:
    """Scenes of the detector fixture's two classes plus a third one."""
    from magiccards.data.pack import pack
    from magiccards.data.synth import synth

    from magiccards.model_dir import open_model_dir

    old = list(open_model_dir(detector).classes)
    root = tmp_path_factory.mktemp("three-classes")
    synth(root / "images", task="detection", count=160, classes=old[:1] + ["joker"] + old[1:], size=128,
          max_cards=2, seed=31, workers=2, progress=False)
    pack(root / "images", root / "rec", val_fraction=0.25, seed=0, workers=2, progress=False)
    return root / "rec"


def test_a_detector_starts_from_an_earlier_detector_with_other_classes(detector, tmp_path):
    from magiccards.train import transfer

    from magiccards.model_dir import open_model_dir

    earlier = open_model_dir(detector)
    old = list(earlier.classes)
    new = [old[0], "joker", old[1]]
    said = []
    net = transfer.detector(earlier, earlier.network, new, 128, log=said.append)
    saved = mx.nd.load(str(earlier.training_state_file))
    own = net._collect_params_with_prefix()
    heads = [n for n in own if n.startswith("class_predictors")]
    assert heads and all(n in saved for n in own)  # the same structure: only the class head's shapes change
    for name, param in own.items():
        if name not in heads:
            assert np.array_equal(param.data().asnumpy(), saved[name].asnumpy()), name  # features, boxes: kept
    for name in (n for n in heads if n.endswith("weight")):
        before, after = saved[name].asnumpy(), own[name].data().asnumpy()
        k_old, k_new = len(old) + 1, len(new) + 1
        assert np.array_equal(after[0::k_new], before[0::k_old])  # background
        assert np.array_equal(after[1::k_new], before[1::k_old])  # old[0] stays class 0
        assert np.array_equal(after[3::k_new], before[2::k_old])  # old[1] moves to class 2
        assert not np.array_equal(after[2::k_new], before[1::k_old])  # the joker starts fresh
    assert "classes kept with their weights" in said[0] and old[0] in said[0]


def test_the_transfer_job_learns_without_imagenet_weights(detector, three_class_scenes, tmp_path, monkeypatch):
    """The default use_pretrained_model=1 with a model in the pretrained channel needs no ImageNet weights."""
    from magiccards.container.local_run import run_local

    monkeypatch.setenv("MXNET_GLUON_REPO", "http://127.0.0.1:9/")  # a download attempt would fail loudly
    lines = []
    hp = {"network": "ssd_300_mobilenet0.25", "image_shape": "128", "epochs": "3", "mini_batch_size": "16",
          "learning_rate": "0.01", "num_workers": "0"}
    model = run_local(three_class_scenes, tmp_path / "job", hp, extra_channels={"pretrained": detector},
                      log=lines.append)
    log = "\n".join(lines)
    assert "transfer: all of the earlier detector" in log and "downloaded" not in log and "ImageNet" not in log
    import re
    losses = [float(v) for v in re.findall(r"Train-cross_entropy=([0-9.]+)", log)]
    # three short epochs at a fixed rate: the loss falls below the first epoch's, though not always monotonically
    assert len(losses) == 3 and min(losses[1:]) < losses[0], losses
    assert (model / "classes.txt").read_text().split() == [*open(three_class_scenes / "classes.txt").read().split()]


def test_a_classifier_keeps_all_but_its_output_layer(classifier):
    from magiccards.train import transfer

    from magiccards.model_dir import open_model_dir

    earlier = open_model_dir(classifier)
    said = []
    net = transfer.classifier(earlier, earlier.network, ["x", "y"], 32, "3,32,32", log=said.append)
    saved = mx.nd.load(str(earlier.training_state_file))
    output = transfer.output_parameters(earlier.network, 2, 32)
    assert output == {"fc.weight", "fc.bias"}
    for name, param in net._collect_params_with_prefix().items():
        if name not in output:
            assert np.array_equal(param.data().asnumpy(), saved[name].asnumpy()), name
    assert net._collect_params_with_prefix()["fc.weight"].shape[0] == 2
    assert "output layer (fc.bias, fc.weight) starts fresh for 2 classes" in said[0]


def test_a_different_network_is_a_clear_error(classifier):
    from magiccards.train import transfer

    from magiccards.model_dir import open_model_dir

    with pytest.raises(DataError, match="classification resnet18_v1b, but this job trains a classification "
                                        "resnet34_v1b"):
        transfer.check_same_network(open_model_dir(classifier), "classification", "resnet34_v1b")


# ---------------------------------------------------------------------------------------------- the shipped base
SIZES = (96, 128, 200, 256, 300, 384, 512)


@pytest.mark.parametrize("size", SIZES)
def test_the_shipped_base_loads_at_every_image_size(size):
    from magiccards.train import transfer

    from magiccards.model_dir import open_model_dir

    base = transfer.shipped_base("ssd_300_mobilenet0.25")
    assert base is not None, "train/base_models/ssd_300_mobilenet0.25-card is shipped (make base-detector)"
    earlier = open_model_dir(base)
    assert earlier.classes == ("card",) and earlier.network == "ssd_300_mobilenet0.25"
    said = []
    net = transfer.detector(earlier, earlier.network, ["ace", "king", "queen"], size, log=said.append)
    ids, scores, boxes = net(mx.nd.zeros((1, 3, size, size)))
    assert boxes.shape[-1] == 4 and "every class starts from the earlier detector's only class 'card'" in said[0]
    # the anchors are this size's own, not the base's (trained at 256): loading them tiled a 300 px image wrongly
    fresh = models.build("detection", earlier.network, ["ace", "king", "queen"], size)
    with mx.autograd.train_mode():
        anchors, own = net(mx.nd.zeros((1, 3, size, size)))[2], fresh(mx.nd.zeros((1, 3, size, size)))[2]
    assert anchors.shape == own.shape and float((anchors - own).abs().max().asscalar()) == 0.0
    assert (base / "MODEL_CARD.md").is_file()
    total = sum(f.stat().st_size for f in base.iterdir())
    assert total < 25e6  # 21 MB in the package (two 10 MB copies of the weights: exported and training state)


def test_without_imagenet_weights_a_detector_starts_from_the_shipped_base(packed_scenes, tmp_path, monkeypatch):
    from magiccards.container.local_run import run_local

    monkeypatch.setenv("MXNET_GLUON_REPO", "http://127.0.0.1:9/")
    monkeypatch.setenv("MXNET_HOME", str(tmp_path / "empty-store"))
    lines = []
    hp = {"network": "ssd_300_mobilenet0.25", "image_shape": "128", "epochs": "1", "mini_batch_size": "16",
          "num_workers": "0"}  # use_pretrained_model defaults to 1 for detection
    run_local(packed_scenes, tmp_path / "job", hp, log=lines.append)
    log = "\n".join(lines)
    assert "starting from the synthetic-card base detector shipped with magiccards" in log
    assert "transfer: all of the earlier detector" in log


def test_without_imagenet_weights_a_mobilenet_classifier_starts_from_the_shipped_base(packed_cards, tmp_path,
                                                                                     monkeypatch):
    """The base classifier (100 card designs) seeds a classifier of other classes: all but the output layer equal
    the shipped weights before the first step, and the job learns from there."""
    from magiccards.container.local_run import run_local
    from magiccards.train import transfer

    from magiccards.model_dir import open_model_dir

    base = transfer.shipped_base("mobilenet0.25")
    assert base is not None, "train/base_models/mobilenet0.25-card is shipped (make base-classifier)"
    earlier = open_model_dir(base)
    assert earlier.task == "classification" and len(earlier.classes) == 100 and (base / "MODEL_CARD.md").is_file()
    assert sum(f.stat().st_size for f in base.iterdir()) < 5e6
    said = []
    net = transfer.classifier(earlier, "mobilenet0.25", ["a", "b", "c", "d"], 64, "3,64,64", log=said.append)
    shipped = mx.nd.load(str(earlier.training_state_file))
    own = net._collect_params_with_prefix()
    output = transfer.output_parameters("mobilenet0.25", 4, 64)
    assert output and all(np.array_equal(own[k].data().asnumpy(), shipped[k].asnumpy()) for k in own if k not in output)

    monkeypatch.setenv("MXNET_GLUON_REPO", "http://127.0.0.1:9/")
    monkeypatch.setenv("MXNET_HOME", str(tmp_path / "empty-store"))
    lines = []
    hp = {"network": "mobilenet0.25", "image_shape": "3,64,64", "epochs": "3", "mini_batch_size": "16",
          "optimizer": "adam", "learning_rate": "0.002", "use_pretrained_model": "1", "num_workers": "0"}
    model_dir = run_local(packed_cards, tmp_path / "job", hp, log=lines.append)
    log = "\n".join(lines)
    assert "starting from the synthetic-card base classifier shipped with magiccards" in log
    assert "parameters of the earlier classifier" in log
    import json
    history = json.loads((model_dir.parent / "output" / "data" / "metrics.json").read_text())
    assert history[-1]["validation_accuracy"] > 0.5  # 4 easy classes: chance is 0.25
