"""The training image under a real Docker engine, run exactly as SageMaker runs it."""
import json
import tarfile

import pytest
from magiccards.container.docker_run import run_docker

from magiccards.errors import TrainingFailed

pytestmark = [pytest.mark.docker, pytest.mark.slow]

IMAGE = "magiccards:cpu"
HP = {"network": "resnet18_v1b", "image_shape": "3,32,32", "epochs": "2", "mini_batch_size": "16",
      "optimizer": "adam", "learning_rate": "0.002"}


@pytest.fixture(scope="module")
def image(docker_client):
    try:
        docker_client.images.get(IMAGE)
    except Exception:
        pytest.fail(f"{IMAGE} is not built; `make test` builds it (make image)")
    return IMAGE


def test_file_mode_classification_in_docker(image, packed_cards, tmp_path):
    lines = []
    model_dir = run_docker(packed_cards, tmp_path / "job", HP, image=image, log=lines.append)
    assert any(line.startswith("Epoch[1] Validation-accuracy=") for line in lines)
    assert (model_dir / "image-classification-symbol.json").is_file()
    with tarfile.open(tmp_path / "job" / "model.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"image-classification-symbol.json", "image-classification-0000.params", "classes.txt",
            "model-card.json"} <= names
    with tarfile.open(tmp_path / "job" / "output.tar.gz") as tar:
        assert "metrics.json" in tar.getnames()
    assert (tmp_path / "job" / "output" / "success").is_file()
    assert json.loads((model_dir / "model-card.json").read_text())["dataset"]["train"] == 120
    # the job folder points at its channels, as a local job's does: `export` finds the validation records there
    from magiccards.deeplens.validation import find_records

    from magiccards.model_dir import open_model_dir
    assert find_records(open_model_dir(model_dir), None, "a test").samefile(packed_cards / "validation.rec")


def test_failure_reason_through_docker(image, packed_cards, tmp_path):
    with pytest.raises(TrainingFailed, match="optimizer='adagrad' is not allowed"):
        run_docker(packed_cards, tmp_path / "job", dict(HP, optimizer="adagrad"), image=image, log=lambda line: None)
    assert "choose one of: sgd, adam, rmsprop, nag" in (tmp_path / "job" / "output" / "failure").read_text()


def test_pipe_mode_detection_in_docker(image, packed_scenes, tmp_path):
    lines = []
    hp = {"network": "ssd_300_mobilenet0.25", "image_shape": "128", "epochs": "2", "mini_batch_size": "16",
          "optimizer": "adam", "learning_rate": "0.002", "use_pretrained_model": "0"}
    model_dir = run_docker(packed_scenes, tmp_path / "job", hp, image=image, input_mode="Pipe", log=lines.append)
    assert any("train (Pipe mode)" in line for line in lines), lines[-20:]
    assert sum("validation mAP <score>=(" in line for line in lines) == 2
    assert (model_dir / "model_algo_1-symbol.json").is_file()
    assert (model_dir / "classes.txt").read_text() == (packed_scenes / "classes.txt").read_text()


def test_docker_stop_checkpoints_and_rerun_resumes(image, docker_client, packed_cards, tmp_path):
    """`docker stop -t 120` mid-training (what StopTrainingJob does) leaves a checkpoint; re-running resumes."""
    import threading
    import time

    hp = dict(HP, epochs="3", mini_batch_size="8", num_workers="0")
    job = tmp_path / "job"
    outcome = {}

    def first_run():
        try:
            run_docker(packed_cards, job, hp, image=image, log=lambda line: None)
        except TrainingFailed as e:
            outcome["error"] = str(e)

    thread = threading.Thread(target=first_run)
    thread.start()
    deadline = time.monotonic() + 300
    while not list((job / "checkpoints").glob("epoch-0001-*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    running = [c for c in docker_client.containers.list() if image in c.image.tags]
    assert len(running) == 1
    started = time.monotonic()
    running[0].stop(timeout=120)
    thread.join(timeout=180)
    assert time.monotonic() - started < 60
    assert "training stopped by SIGTERM" in outcome.get("error", ""), outcome
    lines = []
    run_docker(packed_cards, job, hp, image=image, log=lines.append)
    assert any(line.startswith("Resuming from checkpoint epoch-0001") or line.startswith("Resuming from checkpoint epoch-0002")
               for line in lines), lines[-30:]
    assert (job / "model" / "image-classification-0000.params").is_file()


def test_missing_channel_through_docker(image, docker_client, packed_cards, tmp_path):
    """The container exits non-zero and its failure file names the missing channel."""
    from magiccards.container.job import container_mounts
    from magiccards.container.layout import channels_from_pack_dir, write_job_layout

    job = tmp_path / "job"
    channels = {"validation": channels_from_pack_dir(packed_cards)["validation"]}
    write_job_layout(job, {"validation": []}, HP)
    container = docker_client.containers.run(image, ["train"], hostname="algo-1", volumes=container_mounts(job, channels),
                                             detach=True)
    try:
        assert container.wait(timeout=300)["StatusCode"] != 0
    finally:
        container.remove(force=True)
    assert "the job has no train channel (channels: validation)" in (job / "output" / "failure").read_text()


def test_sigterm_to_the_cli_stops_the_container_gracefully(image, docker_client, packed_cards, tmp_path):
    """`magiccards train --docker` forwards SIGTERM as `docker stop -t 120`: checkpoint, exit 143, no container left."""
    import signal
    import subprocess
    import sys

    hp = dict(HP, epochs="3", mini_batch_size="8", num_workers="0")
    job = tmp_path / "job"
    args = [a for k, v in hp.items() for a in (f"--{k}", v)]
    proc = subprocess.Popen([sys.executable, "-m", "magiccards.cli", "train", str(packed_cards), "--docker", "--image",
                             image, "--job-dir", str(job), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    for line in proc.stdout:
        if line.startswith("Epoch[0] Time cost"):
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=200)
    assert proc.returncode == 143 and "stopped by SIGTERM" in err and "Traceback" not in err, err
    assert list((job / "checkpoints").glob("epoch-*"))
    assert not [c for c in docker_client.containers.list(all=True) if image in c.image.tags]
