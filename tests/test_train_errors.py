"""Every user error of the training job: non-zero exit and an actionable output/failure."""
import json
import shutil

import pytest

from magiccards.container.layout import channels_from_pack_dir, write_job_layout
from magiccards.container.local_run import TrainingFailed, run_local

from .helpers import run_cli

FAST = {"network": "resnet18_v1b", "image_shape": "3,32,32", "epochs": "1", "mini_batch_size": "8"}


def _fails(data, tmp_path, hp, message, **kw):
    with pytest.raises(TrainingFailed) as info:
        run_local(data, tmp_path / "job", hp, log=lambda line: None, **kw)
    failure = (tmp_path / "job" / "output" / "failure").read_text()
    assert message in failure, failure
    assert "Traceback" not in failure and "Framework Error" not in failure
    assert message in str(info.value)
    return failure


def test_missing_train_channel(packed_cards, tmp_path):
    job = tmp_path / "job"
    channels = channels_from_pack_dir(packed_cards)
    write_job_layout(job, {"validation": channels["validation"]}, FAST)
    from magiccards.container.local_run import TRAINING_MODULE
    import os, subprocess, sys
    env = dict(os.environ, SAGEMAKER_BASE_DIR=str(job), SAGEMAKER_TRAINING_MODULE=TRAINING_MODULE)
    r = subprocess.run([sys.executable, "-c", "import sys; from sagemaker_training.cli.train import main; sys.exit(main())"],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 1
    assert "the job has no train channel (channels: validation)" in (job / "output" / "failure").read_text()


def _copy(packed, tmp_path, name="data"):
    target = tmp_path / name
    shutil.copytree(packed, target)
    return target


def test_empty_rec(packed_cards, tmp_path):
    data = _copy(packed_cards, tmp_path)
    (data / "train.rec").write_bytes(b"")
    (data / "train.idx").write_text("")
    _fails(data, tmp_path, FAST, "holds no record")


def test_corrupt_rec(packed_cards, tmp_path):
    data = _copy(packed_cards, tmp_path)
    (data / "train.rec").write_bytes(b"\x01\x02\x03\x04" * 64)
    _fails(data, tmp_path, FAST, "train.rec is corrupt or not a RecordIO file")


def test_label_width_mismatch(packed_cards, tmp_path):
    _fails(packed_cards, tmp_path, dict(FAST, task="detection"), "label width mismatch")


def test_num_classes_mismatch(packed_cards, tmp_path):
    _fails(packed_cards, tmp_path, dict(FAST, num_classes="7"), "num_classes=7 does not match the 4 classes")


def test_image_shape_too_small(packed_cards, tmp_path):
    _fails(packed_cards, tmp_path, dict(FAST, network="inceptionv3", image_shape="3,32,32"),
           "image_shape 3,32,32 is too small for inceptionv3")


def test_mini_batch_larger_than_data(packed_cards, tmp_path):
    _fails(packed_cards, tmp_path, dict(FAST, mini_batch_size="500"),
           "mini_batch_size=500 is larger than the 120 training images")


@pytest.mark.parametrize("hp, message", [
    ({"optimizer": "adagrad"}, "choose one of: sgd, adam, rmsprop, nag"),
    ({"network": "resnet9000"}, "network='resnet9000' is not a GluonCV classification model"),
    ({"colour": "red"}, "unknown hyperparameter(s) colour"),
])
def test_bad_hyperparameters(packed_cards, tmp_path, hp, message):
    _fails(packed_cards, tmp_path, dict(FAST, **hp), message)


def test_pretrained_weights_missing(packed_cards, tmp_path):
    _fails(packed_cards, tmp_path, dict(FAST, use_pretrained_model="1"),
           "use_pretrained_model=1 needs ImageNet weights for resnet18_v1b")


def test_cli_shows_the_failure_reason(packed_cards, tmp_path):
    r = run_cli("train", packed_cards, "--job-dir", tmp_path / "job", "--optimizer", "adagrad")
    assert r.returncode == 1
    assert "error: training failed: hyperparameter optimizer='adagrad' is not allowed" in r.stderr
    r = run_cli("train", tmp_path / "nowhere")
    assert r.returncode == 1 and "does not exist" in r.stderr


def test_out_of_memory(packed_cards, tmp_path):
    """On a machine too small for the job (an address-space limit here), the job says what to change."""
    import os
    import resource
    import subprocess
    import sys
    from magiccards.container.local_run import TRAINING_MODULE
    job = tmp_path / "job"
    write_job_layout(job, channels_from_pack_dir(packed_cards), dict(FAST, image_shape="3,1024,1024", mini_batch_size="64"))
    limit = 6 * 1024 ** 3

    def small_machine():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = dict(os.environ, SAGEMAKER_BASE_DIR=str(job), SAGEMAKER_TRAINING_MODULE=TRAINING_MODULE)
    r = subprocess.run([sys.executable, "-c", "import sys; from sagemaker_training.cli.train import main; sys.exit(main())"],
                       env=env, capture_output=True, text=True, preexec_fn=small_machine, timeout=600)
    failure = (job / "output" / "failure").read_text()
    assert r.returncode != 0, r.stdout[-2000:]
    assert "out of memory: lower mini_batch_size or image_shape" in failure, failure
    assert "Traceback" not in failure


@pytest.mark.parametrize("pattern, message", [
    ("conv[", "freeze_layer_pattern='conv[' is not a regular expression"),
    ("no_such_layer", "freeze_layer_pattern='no_such_layer' matches no parameter of the network; names look like ssd"),
])
def test_bad_freeze_layer_pattern(packed_scenes, tmp_path, pattern, message):
    hp = {"network": "ssd_300_mobilenet0.25", "image_shape": "128", "epochs": "1", "use_pretrained_model": "0",
          "freeze_layer_pattern": pattern}
    _fails(packed_scenes, tmp_path, hp, message)


def test_checkpoints_of_another_network_are_a_clear_error(packed_cards, tmp_path):
    run_local(packed_cards, tmp_path / "job", FAST, log=lambda line: None)  # leaves checkpoints/epoch-0001-...
    _fails(packed_cards, tmp_path, dict(FAST, network="mobilenetv3_small", epochs="2"),
           "does not fit this job's network")


def test_checkpoints_of_another_optimizer_are_a_clear_error(packed_cards, tmp_path):
    run_local(packed_cards, tmp_path / "job", FAST, log=lambda line: None)  # sgd, the built-in default
    _fails(packed_cards, tmp_path, dict(FAST, optimizer="adam", epochs="2"),
           "was written with optimizer=sgd, this job asks for adam")
