"""The image runs unchanged under the SageMaker Python SDK's local mode (docker compose, algo-1-xxxxx hosts)."""
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.slow]
SCRIPT = Path(__file__).with_name("sdk_local_mode.py")


def test_estimator_local_mode_fit(docker_client, packed_cards, tmp_path):
    python = os.environ.get("MAGICCARDS_SDK_PYTHON")
    if not python:
        if os.environ.get("CI"):
            pytest.fail("CI needs the SageMaker SDK venv (make test sets MAGICCARDS_SDK_PYTHON)")
        pytest.skip("MAGICCARDS_SDK_PYTHON is not set (make test installs the SDK in .venv-sdk)")
    for name in ("train", "validation"):
        (tmp_path / name).mkdir()
        for suffix in ("rec", "idx"):
            shutil.copy(packed_cards / f"{name}.{suffix}", tmp_path / name / f"{name}.{suffix}")
    shutil.copy(packed_cards / "classes.txt", tmp_path / "train" / "classes.txt")
    (tmp_path / "out").mkdir()
    before = {c.id for c in docker_client.containers.list(all=True)}
    try:
        r = subprocess.run([python, str(SCRIPT), "magiccards:cpu", str(tmp_path / "train"), str(tmp_path / "validation"),
                            str(tmp_path / "out")], capture_output=True, text=True, timeout=600)
    finally:  # the SDK's docker compose leaves its stopped algo-1 container (~350 MB of checkpoints) behind
        for container in docker_client.containers.list(all=True):
            if container.id not in before:
                container.remove(force=True)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-3000:]
    assert "Epoch[1] Validation-accuracy=" in log and "algo-1-" in log
    with tarfile.open(tmp_path / "out" / "model.tar.gz") as tar:
        assert {"image-classification-symbol.json", "image-classification-0000.params", "classes.txt"} <= set(tar.getnames())
