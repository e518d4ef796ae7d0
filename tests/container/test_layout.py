"""The /opt/ml layout as SageMaker writes it, and the job folder's life here (container/job.py)."""
import json
import tarfile

import pytest
from magiccards.container.job import (
    container_mounts,
    failure_reason,
    fresh_status,
    job_channels,
    raise_if_failed,
    tar_folder,
)
from magiccards.container.layout import channels_from_pack_dir, write_job_layout

from magiccards.errors import DataError, TrainingFailed, UserError


def _pack_dir(tmp_path):
    data = tmp_path / "rec"
    data.mkdir()
    for name in ("train.rec", "train.idx", "validation.rec", "classes.txt"):
        (data / name).write_text(name)
    return data


def test_the_layout_is_what_sagemaker_writes(tmp_path):
    channels = channels_from_pack_dir(_pack_dir(tmp_path))
    assert {k: [p.name for p in v] for k, v in channels.items()} == {
        "train": ["train.rec", "train.idx", "classes.txt"], "validation": ["validation.rec", "classes.txt"]}
    job = write_job_layout(tmp_path / "job", channels, {"epochs": 3, "early_stopping": True, "image_shape": "3,64,64"},
                           pipe_channels={"validation"}, hosts=("algo-2", "algo-1"), current_host="algo-2")
    config = job / "input" / "config"
    assert json.loads((config / "hyperparameters.json").read_text()) == {
        "epochs": "3", "early_stopping": "True", "image_shape": "3,64,64"}
    data_config = json.loads((config / "inputdataconfig.json").read_text())
    assert data_config["train"] == {"ContentType": "application/x-recordio", "TrainingInputMode": "File",
                                    "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}
    assert data_config["validation"]["TrainingInputMode"] == "Pipe"
    resources = json.loads((config / "resourceconfig.json").read_text())
    assert resources["current_host"] == "algo-2" and resources["hosts"] == ["algo-1", "algo-2"]
    assert (job / "input" / "data" / "train" / "train.rec").is_symlink()
    assert not (job / "input" / "data" / "validation").exists()  # Pipe mode: FIFOs appear there instead
    for sub in ("model", "output/data", "checkpoints"):
        assert (job / sub).is_dir()


def test_a_folder_without_train_rec_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="holds no train.rec; pack your images first"):
        channels_from_pack_dir(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        channels_from_pack_dir(tmp_path / "nowhere")


def test_pipe_mode_channels_and_extra_channels(tmp_path):
    data = _pack_dir(tmp_path)
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "resnet18_v1b.params").write_text("w")
    channels, feeds = job_channels(data, {"pretrained": tmp_path / "weights"}, "Pipe")
    assert {k: v.name for k, v in feeds.items()} == {"train": "train.rec", "validation": "validation.rec"}
    assert channels["train"] == [] and [p.name for p in channels["classes"]] == ["classes.txt"]
    assert [p.name for p in channels["pretrained"]] == ["resnet18_v1b.params"]
    with pytest.raises(UserError, match="--input-mode must be File or Pipe"):
        job_channels(data, None, "Stream")
    with pytest.raises(UserError, match="is not a folder"):
        job_channels(data, {"model": tmp_path / "nowhere"})


def test_outcome_archives_and_mounts(tmp_path):
    job = write_job_layout(tmp_path / "job", {"train": []}, {})
    (job / "output" / "failure").write_text("bad data\n")
    assert failure_reason(job, 0) == "bad data"  # the toolkit exits 0 on some failures, yet writes the file
    with pytest.raises(TrainingFailed, match="training failed: bad data"):
        raise_if_failed(job, 1)
    fresh_status(job)
    assert failure_reason(job, 0) is None and failure_reason(job, 137) == "exit status 137"
    (job / "model" / "classes.txt").write_text("a\n")
    archive = tar_folder(job / "model", job / "model.tar.gz")
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["classes.txt"]
    mounts = container_mounts(job, {"train": [tmp_path / "x.rec"]})
    assert mounts[str(job / "input" / "config")] == {"bind": "/opt/ml/input/config", "mode": "ro"}
    assert mounts[str(tmp_path / "x.rec")] == {"bind": "/opt/ml/input/data/train/x.rec", "mode": "ro"}
    assert mounts[str(job / "checkpoints")]["mode"] == "rw"
