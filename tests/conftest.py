"""Shared fixtures: generated card data, real raccoon photos (tests/data/files), and the Docker engine."""
from __future__ import annotations

import fcntl
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from .helpers import QUICK_HP

# A test run started in the background (bash ignores SIGINT for background jobs without job control) inherits
# SIGINT ignored, and an ignored signal stays ignored across exec: the Ctrl-C tests' commands would never see it.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# The user's cache (upload's remembered digests) is not the tests': they and the commands they start get their own.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="magiccards-test-cache-")


@pytest.fixture(autouse=True)
def _environment_restored():
    """Each test leaves os.environ as it found it: an in-process predictor sets OMP_NUM_THREADS (read when MXNet's
    engine starts), and a training job started later by a session fixture would inherit it and learn other
    weights: a fixture's model must not depend on which test happened to create it."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`make test` runs two workers, `--dist loadgroup`) each test module runs whole on one
    worker (its module-scoped fixtures built once), and the tests that drive the Docker engine all run on one worker,
    one after another, as without xdist: they count the engine's containers and images, and SageMaker's local mode
    serves on the host's port 8080."""
    if not getattr(config.option, "loadgroup", False):  # set in pytest-xdist's workers by --dist loadgroup
        return
    for item in items:
        group = "docker" if item.get_closest_marker("docker") else item.nodeid.split("::")[0]
        # the group as pytest-xdist's scheduler reads it: a suffix of the test's id. (pytest-xdist 3.8 writes its
        # xdist_group marker there as `item._nodeid`, which pytest 9 no longer reads: its id is `item._id`.)
        nodeid = f"{item.nodeid}@{group}"
        if hasattr(item, "_id"):
            item._id = type(item._id).parse(nodeid)
        else:
            item._nodeid = nodeid


def built_once(tmp_path_factory, name: str, build) -> Path:
    """`build(folder)` (returning a path inside `folder`) run once for the whole test run, in whichever
    pytest-xdist worker asks first; the others wait for it and take the same path. Trained models are the suite's
    most expensive fixtures: no worker trains one another worker has. Without xdist: once per session, as before."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each worker's own
    folder, done = root / f"shared-{name}", root / f"shared-{name}.done"
    with open(root / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or when a worker dies
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a worker that failed to build it left
            folder.mkdir()
            result = Path(build(folder))
            done.write_text(str(result.relative_to(folder)))
        return folder / done.read_text()


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

    def build(out: Path) -> Path:
        synth(out, task="classification", count=40, classes=4, size=96, seed=3, workers=2, progress=False)
        return out
    return built_once(tmp_path_factory, "cards", build)


@pytest.fixture(scope="session")
def card_scenes(tmp_path_factory) -> Path:
    """A small detection set: 12 scenes of 160 px with VOC annotations."""
    from magiccards.data.synth import synth

    def build(out: Path) -> Path:
        synth(out, task="detection", count=12, classes=3, size=160, seed=4, workers=2, progress=False)
        return out
    return built_once(tmp_path_factory, "scenes", build)


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

    def build(root: Path) -> Path:
        synth(root / "images", task="classification", count=160, classes=4, size=64, seed=21, workers=2,
              progress=False)
        pack(root / "images", root / "rec", val_fraction=0.25, seed=0, workers=2, progress=False)
        return root / "rec"
    return built_once(tmp_path_factory, "train-cards", build)


@pytest.fixture(scope="session")
def packed_scenes(tmp_path_factory) -> Path:
    """An easy detection set, packed: 2 classes, at most 2 cards per 128 px scene, 20% validation."""
    from magiccards.data.pack import pack
    from magiccards.data.synth import synth

    def build(root: Path) -> Path:
        synth(root / "images", task="detection", count=240, classes=2, size=128, max_cards=2, seed=22, workers=2,
              progress=False)
        pack(root / "images", root / "rec", val_fraction=0.2, seed=0, workers=2, progress=False)
        return root / "rec"
    return built_once(tmp_path_factory, "train-scenes", build)


# Trained models to serve and export: a small classifier and a small detector, trained once per test session.
@pytest.fixture(scope="session")
def classifier(packed_cards, tmp_path_factory) -> Path:
    """The model directory of a 4-class ResNet-18 (32 px) trained for 4 epochs."""
    from magiccards.container.local_run import run_local
    return built_once(tmp_path_factory, "serve-classifier", lambda root: run_local(
        packed_cards, root / "job", dict(QUICK_HP, epochs="4"), log=lambda line: None))


@pytest.fixture(scope="session")
def detector(packed_scenes, tmp_path_factory) -> Path:
    """The model directory of a 2-class SSD (MobileNet 0.25, 128 px) trained for 4 epochs from the synthetic-card
    base detector shipped with magiccards (about 10 s; validation mAP about 0.3). From random weights a detector this
    small learns nothing in minutes, and what it answers then hangs on the CPU's rounding (on one machine no box at
    all): the tests that need boxes would pass or fail by the machine."""
    from magiccards.container.local_run import run_local
    hp = {"network": "ssd_300_mobilenet0.25", "image_shape": "128", "epochs": "4", "mini_batch_size": "16",
          "use_pretrained_model": "1", "optimizer": "adam", "learning_rate": "0.001", "num_workers": "0"}
    return built_once(tmp_path_factory, "serve-detector", lambda root: run_local(
        packed_scenes, root / "job", hp, log=lambda line: None))


@pytest.fixture(scope="session")
def trained_classifier(packed_cards, tmp_path_factory) -> Path:
    """A classifier that has really learned (64 px, Adam, 10 epochs: about 85 % validation accuracy), for the
    checks whose gates mean something only on a model with decided answers (INT8 parity)."""
    from magiccards.container.local_run import run_local
    hp = dict(QUICK_HP, image_shape="3,64,64", optimizer="adam", learning_rate="0.002", epochs="10")
    return built_once(tmp_path_factory, "trained-classifier", lambda root: run_local(
        packed_cards, root / "job", hp, log=lambda line: None))


@pytest.fixture(scope="session")
def trained_detector(tmp_path_factory) -> Path:
    """A detector with some skill (640 scenes of 128 px, 2 classes, Adam, 8 epochs from the shipped base detector:
    about 40 s), for the export parity checks: mAP differences on a detector that has learned nothing are noise."""
    from magiccards.container.local_run import run_local
    from magiccards.data.pack import pack
    from magiccards.data.synth import synth
    hp = {"network": "ssd_300_mobilenet0.25", "image_shape": "128", "epochs": "8", "mini_batch_size": "16",
          "use_pretrained_model": "1", "optimizer": "adam", "learning_rate": "0.001", "lr_scheduler_step": "6",
          "num_workers": "0"}

    def build(root: Path) -> Path:
        synth(root / "images", task="detection", count=640, classes=2, size=128, max_cards=2, seed=22, workers=2,
              progress=False)
        pack(root / "images", root / "rec", val_fraction=0.1, seed=0, workers=2, progress=False)
        return run_local(root / "rec", root / "job", hp, log=lambda line: None)
    return built_once(tmp_path_factory, "trained-detector", build)


@pytest.fixture(scope="session")
def crop_classifier(tmp_path_factory) -> Path:
    """A classifier of the two card designs of `trained_detector`'s scenes, trained on the square crops of their
    boxes (`pack --crops`, random crops of them while training: a detector's boxes sit a little off the drawn ones)
    with its classes in the opposite order to the detector's, so that a two-stage model that answers right has taken
    its names from the classifier."""
    from magiccards.container.local_run import run_local
    from magiccards.data.pack import pack
    from magiccards.data.samples import read_classes
    from magiccards.data.synth import synth

    def build(root: Path) -> Path:
        synth(root / "images", task="detection", count=160, classes=2, size=128, max_cards=2, seed=23, workers=2,
              progress=False)
        classes = read_classes(root / "images" / "classes.txt")[::-1]
        pack(root / "images", root / "rec", classes=classes, val_fraction=0.2, seed=0, crops=True, workers=2,
             progress=False, log=lambda line: None)
        hp = dict(QUICK_HP, image_shape="3,48,48", optimizer="adam", learning_rate="0.002", epochs="8",
                  augmentation_type="crop")
        return run_local(root / "rec", root / "job", hp, log=lambda line: None)
    return built_once(tmp_path_factory, "crop-classifier", build)


@pytest.fixture(scope="session")
def two_stage(trained_detector, crop_classifier, tmp_path_factory) -> Path:
    """`magiccards combine` of the trained detector and the crop classifier: a two-stage model directory. Boxes
    down to 0.01 are named (the default is 0.05): the small test detector scores its boxes low."""
    from magiccards.combine import combine

    def build(root: Path) -> Path:
        combine(trained_detector, crop_classifier, root / "model", {"box_threshold": 0.01}, log=lambda line: None)
        return root / "model"
    return built_once(tmp_path_factory, "two-stage", build)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(command: list[str], probe: str, name: str):
    """Start a local server and wait until `probe` answers over HTTP; yields, then stops it."""
    import subprocess
    import time
    import urllib.error
    import urllib.request

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(probe, timeout=1)
            break
        except urllib.error.HTTPError:
            break  # it answers
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail(f"{name} did not start")
            time.sleep(0.2)
    return process


# AWS: moto_server, a real HTTP server on 127.0.0.1, stands in for the services it simulates.
@pytest.fixture(scope="session")
def moto_endpoint():
    """http://127.0.0.1:PORT of a moto_server started for the test session."""
    import shutil
    import sys

    port = _free_port()
    server = Path(sys.executable).with_name("moto_server")
    command = [str(server)] if server.exists() else [shutil.which("moto_server") or "moto_server"]
    endpoint = f"http://127.0.0.1:{port}"
    process = _serve([*command, "-H", "127.0.0.1", "-p", str(port)], f"{endpoint}/moto-api/", "moto_server")
    yield endpoint
    process.terminate()
    process.wait(10)


@pytest.fixture()
def aws(moto_endpoint, monkeypatch) -> str:
    """The standard AWS configuration pointed at moto_server: dummy keys, a region, AWS_ENDPOINT_URL."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    return moto_endpoint


# A real image registry (Debian's docker-registry) on 127.0.0.1, for publish tests (moto has no registry API).
@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> str:
    """HOST:PORT of a docker-registry started for the test session (storage in a temporary folder)."""
    import shutil

    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry is not installed (make docker installs it)")
    port = _free_port()
    folder = tmp_path_factory.mktemp("registry")
    config = folder / "config.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {folder / 'data'}\n"
                      f"  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n")
    process = _serve([binary, "serve", str(config)], f"http://127.0.0.1:{port}/v2/", "docker-registry")
    yield f"127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)
