"""Trained models to serve: a small classifier and a small detector, trained once per test session."""
from pathlib import Path

import pytest

from ..helpers import QUICK_HP


@pytest.fixture(scope="session")
def classifier(packed_cards, tmp_path_factory) -> Path:
    """The model directory of a 4-class ResNet-18 (32 px) trained for 4 epochs."""
    from magiccards.container.local_run import run_local
    job = tmp_path_factory.mktemp("serve-classifier") / "job"
    return run_local(packed_cards, job, dict(QUICK_HP, epochs="4"), log=lambda line: None)


@pytest.fixture(scope="session")
def detector(packed_scenes, tmp_path_factory) -> Path:
    """The model directory of a 2-class SSD (MobileNet 0.25, 128 px) trained for 3 epochs."""
    from magiccards.container.local_run import run_local
    job = tmp_path_factory.mktemp("serve-detector") / "job"
    hp = {"network": "ssd_300_mobilenet0.25", "image_shape": "128", "epochs": "3", "mini_batch_size": "16",
          "use_pretrained_model": "0", "learning_rate": "0.01", "num_workers": "0"}
    return run_local(packed_scenes, job, hp, log=lambda line: None)
