"""`docker run IMAGE serve` (the training image, unchanged) and the SageMaker SDK's local-mode deploy."""
import json
import os
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest

from ..helpers import read_all
from .test_server import _free_port

pytestmark = [pytest.mark.docker, pytest.mark.slow]
IMAGE = os.environ.get("MAGICCARDS_IMAGE", "magiccards:cpu")


def _tar(model: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        for f in model.iterdir():
            tar.add(f, arcname=f.name)
    return archive


def _wait_for_ping(port: int, container, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            container.reload()
            assert container.status in ("created", "running"), container.logs().decode()[-2000:]
            time.sleep(0.5)
    raise AssertionError(f"no /ping answer within {seconds} s: {container.logs().decode()[-2000:]}")


def test_docker_run_image_serve_with_a_model_tar_gz(docker_client, classifier, packed_cards, tmp_path):
    """SageMaker unpacks model.tar.gz into /opt/ml/model; a model folder holding the archive works too."""
    folder = tmp_path / "model"
    folder.mkdir()
    _tar(classifier, folder / "model.tar.gz")
    port = _free_port()
    container = docker_client.containers.run(IMAGE, ["serve"], detach=True, ports={"8080/tcp": port},
                                             volumes={str(folder): {"bind": "/opt/ml/model", "mode": "ro"}},
                                             environment={"SAGEMAKER_MODEL_SERVER_WORKERS": "2"})
    try:
        _wait_for_ping(port, container)
        jpeg = read_all(packed_cards / "validation.rec")[0][1]
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=jpeg,
                                         headers={"Content-Type": "image/jpeg"})
        with urllib.request.urlopen(request, timeout=30) as r:
            probabilities = json.loads(r.read())
        assert len(probabilities) == 4 and abs(sum(probabilities) - 1) < 1e-4
        container.stop(timeout=30)  # SIGTERM: a graceful stop
        assert container.wait(timeout=60)["StatusCode"] == 0
        logs = container.logs().decode()
        assert "serving classification model" in logs and "2 worker(s)" in logs
    finally:
        container.remove(force=True)


@pytest.mark.parametrize("which", ["classifier", "detector", "two_stage"])
def test_sagemaker_sdk_local_mode_deploys_the_image(docker_client, request, packed_cards, packed_scenes, tmp_path,
                                                    which):
    python = os.environ.get("MAGICCARDS_SDK_PYTHON")
    if not python:
        if os.environ.get("CI"):
            pytest.fail("CI needs the SageMaker SDK venv (make test sets MAGICCARDS_SDK_PYTHON)")
        pytest.skip("MAGICCARDS_SDK_PYTHON is not set (make test installs the SDK in .venv-sdk)")
    model = request.getfixturevalue(which)
    packed = packed_cards if which == "classifier" else packed_scenes
    picture = tmp_path / "picture.jpg"
    picture.write_bytes(read_all(packed / "validation.rec")[0][1])
    archive = _tar(model, tmp_path / "model.tar.gz")
    before = {c.id for c in docker_client.containers.list(all=True)}
    try:
        r = subprocess.run([python, str(Path(__file__).with_name("sdk_deploy.py")), IMAGE, str(archive), str(picture)],
                           capture_output=True, text=True, timeout=600)
    finally:  # delete_endpoint leaves the stopped ...-algo-1-... container behind
        for container in docker_client.containers.list(all=True):
            if container.id not in before:
                container.remove(force=True)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-3000:]
    answer = json.loads(log.split("ANSWER ", 1)[1].splitlines()[0])
    if which == "classifier":
        assert len(answer) == 4 and abs(sum(answer) - 1) < 1e-4
    else:
        rows = answer["prediction"]
        assert rows and all(len(row) == 6 and 0 <= row[2] < row[4] <= 1 for row in rows)
