"""Shared fixtures: generated card data, real raccoon photos (tests/data/files), and the Docker engine."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FILES = Path(__file__).resolve().parent / "data" / "files"
RACCOON = FILES / "raccoon"  # 24 real photos with VOC boxes (MIT licence)


@pytest.fixture(scope="session")
def raccoon() -> Path:
    return RACCOON


@pytest.fixture(scope="session")
def card_folders(tmp_path_factory) -> Path:
    """A small classification set: 4 classes x 10 images of 96 px."""
    from magiccards.data.synth import synth
    out = tmp_path_factory.mktemp("cards")
    synth(out, task="classification", count=40, classes=4, size=96, seed=3, workers=2, progress=False)
    return out


@pytest.fixture(scope="session")
def card_scenes(tmp_path_factory) -> Path:
    """A small detection set: 12 scenes of 160 px with VOC annotations."""
    from magiccards.data.synth import synth
    out = tmp_path_factory.mktemp("scenes")
    synth(out, task="detection", count=12, classes=3, size=160, seed=4, workers=2, progress=False)
    return out


@pytest.fixture(scope="session")
def docker_client():
    """The Docker engine. In CI a missing engine fails the test; elsewhere it skips with the reason."""
    from magiccards.container.docker_engine import client

    from magiccards.errors import DockerUnavailable
    try:
        return client()
    except DockerUnavailable as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs a Docker engine: {e}")
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def packed_cards(tmp_path_factory) -> Path:
    """An easy classification set, packed: 4 classes x 40 images of 64 px, 25% validation."""
    from magiccards.data.pack import pack
    from magiccards.data.synth import synth
    root = tmp_path_factory.mktemp("train-cards")
    synth(root / "images", task="classification", count=160, classes=4, size=64, seed=21, workers=2, progress=False)
    pack(root / "images", root / "rec", val_fraction=0.25, seed=0, workers=2, progress=False)
    return root / "rec"


@pytest.fixture(scope="session")
def packed_scenes(tmp_path_factory) -> Path:
    """An easy detection set, packed: 2 classes, at most 2 cards per 128 px scene, 20% validation."""
    from magiccards.data.pack import pack
    from magiccards.data.synth import synth
    root = tmp_path_factory.mktemp("train-scenes")
    synth(root / "images", task="detection", count=240, classes=2, size=128, max_cards=2, seed=22, workers=2,
          progress=False)
    pack(root / "images", root / "rec", val_fraction=0.2, seed=0, workers=2, progress=False)
    return root / "rec"
