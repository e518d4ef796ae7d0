"""Every user error of the training job: non-zero exit and an actionable output/failure."""
import resource
import shutil
import signal
import subprocess
import sys

import pytest
from magiccards.container.job import run_toolkit
from magiccards.container.layout import channels_from_pack_dir, write_job_layout
from magiccards.container.local_run import run_local

from magiccards.errors import TrainingFailed

from ..helpers import run_cli

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
    r = run_toolkit(job)
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


def test_image_shape_below_the_networks_stride(packed_cards, tmp_path):
    """A ResNet runs on 1x1 images (padding only): refused, naming the smallest size it takes."""
    lines = []
    with pytest.raises(TrainingFailed) as info:
        run_local(packed_cards, tmp_path / "job", dict(FAST, image_shape="3,1,1"), log=lines.append)
    assert "image_shape 3,1,1 is too small for resnet18_v1b" in str(info.value)
    assert "the smallest size it takes is 32" in str(info.value)
    # the toolkit's note about every plain-string hyperparameter is kept out of the user's log
    assert lines and not [line for line in lines if "Failed to parse hyperparameter" in line]
    assert not [line for line in lines if "infer_shape error" in line]


def test_top_k_above_the_number_of_classes_is_clamped_with_a_note(packed_cards, tmp_path):
    lines = []
    run_local(packed_cards, tmp_path / "job", dict(FAST, top_k="9"), log=lines.append)
    assert "note: top_k=9 but there are 4 classes; validation_top_k_accuracy counts the top 4" in lines
    assert any("Validation-top_k_accuracy=1.000000" in line for line in lines)


def test_job_folder_under_a_file(packed_cards, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    r = run_cli("train", packed_cards, "--job-dir", tmp_path / "file" / "job", *_cli(FAST))
    assert r.returncode == 1 and "error: cannot write the job folder" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and (tmp_path / "file").read_text() == "not a folder"


def test_a_full_disk_during_training_is_one_line_and_leaves_no_partial_file(packed_cards, tmp_path):
    def full_disk():  # files may grow to 300 kB: the job's configuration fits, its checkpoints do not
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
    job = tmp_path / "job"
    r = subprocess.run([sys.executable, "-m", "magiccards.cli", "train", str(packed_cards), "--job-dir", str(job),
                        *_cli(FAST)], capture_output=True, text=True, preexec_fn=full_disk, timeout=600)
    assert r.returncode == 1, r.stderr
    assert "error: training failed: cannot write checkpoints or the model: the disk is full" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    written = [p for p in job.rglob("*") if p.is_file() and "input" not in p.parts]
    assert [p.name for p in written] == ["failure"], written


def test_an_immutable_job_folder(packed_cards, tmp_path):
    job = tmp_path / "job"
    job.mkdir()
    subprocess.run(["chattr", "+i", str(job)], check=True)
    try:
        r = run_cli("train", packed_cards, "--job-dir", job, *_cli(FAST))
    finally:
        subprocess.run(["chattr", "-i", str(job)], check=True)
    assert r.returncode == 1 and "error: cannot write the job folder" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and list(job.iterdir()) == []


def _cli(hp: dict) -> list[str]:
    return [item for key, value in hp.items() for item in (f"--{key}", value)]


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
    _fails(packed_cards, tmp_path / "again", dict(FAST, use_pretrained_model="1"),
           "a synthetic-card base model ships with magiccards for network mobilenet0.25 and ssd_300_mobilenet0.25")


def test_cli_shows_the_failure_reason(packed_cards, tmp_path):
    r = run_cli("train", packed_cards, "--job-dir", tmp_path / "job", "--mini_batch_size", "500")
    assert r.returncode == 1
    assert "error: training failed: mini_batch_size=500 is larger than the 120 training images" in r.stderr
    r = run_cli("train", tmp_path / "nowhere")
    assert r.returncode == 1 and "does not exist" in r.stderr


def test_out_of_memory(packed_cards, tmp_path):
    """On a machine too small for the job (an address-space limit here), the job says what to change."""
    import resource
    job = tmp_path / "job"
    write_job_layout(job, channels_from_pack_dir(packed_cards), dict(FAST, image_shape="3,1024,1024", mini_batch_size="64"))
    limit = 6 * 1024 ** 3

    def small_machine():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    r = run_toolkit(job, preexec_fn=small_machine, timeout=600)
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
           "belongs to another job (changed: epochs 1 -> 2, network resnet18_v1b -> mobilenetv3_small)")


def test_checkpoints_of_another_optimizer_are_a_clear_error(packed_cards, tmp_path):
    run_local(packed_cards, tmp_path / "job", FAST, log=lambda line: None)  # sgd, the built-in default
    _fails(packed_cards, tmp_path, dict(FAST, optimizer="adam", epochs="2"),
           "was written with optimizer=sgd, this job asks for adam")


@pytest.mark.parametrize("args, message", [
    (["--optimizer", "adagrad"], "error: hyperparameter optimizer='adagrad' is not allowed; choose one of: sgd"),
    (["--epochz", "3"], "unknown hyperparameter(s) epochz (did you mean epochs?)"),
    (["--job_dir", "x"], "--job_dir is not a hyperparameter; did you mean the option --job-dir?"),
    (["--nms_threshold", "0.3"], "hyperparameter nms_threshold applies to detection only, not classification"),
    (["--learning_rate", "nan"], "learning_rate='nan' is not a finite number"),
    (["--num_layers", "200"], "num_layers=200 has no GluonCV ResNet"),
    (["--epochs"], "hyperparameter --epochs needs a value"),
])
def test_cli_checks_hyperparameters_before_laying_out_a_job(packed_cards, tmp_path, args, message):
    r = run_cli("train", packed_cards, "--job-dir", tmp_path / "job", *args)
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "job").exists() and not (tmp_path / "x").exists()
