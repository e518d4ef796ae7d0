"""`predict` and `invoke` with inputs that clash, fail or point nowhere, and `predict` of an archive:
every answer kept under its own name, bad images skipped, one line for what cannot work, nothing left in TMPDIR."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time

from ..helpers import read_all, run_cli
from .test_server import Server


def _clashing(packed, root):
    """a/p.jpg, b/p.jpg and b/p.png: three images, one stem."""
    scenes = [jpeg for _, jpeg in read_all(packed / "validation.rec")[:2]]
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a" / "p.jpg").write_bytes(scenes[0])
    (root / "b" / "p.jpg").write_bytes(scenes[1])
    from PIL import Image
    import io
    Image.open(io.BytesIO(scenes[1])).save(root / "b" / "p.png")
    return [root / "a" / "p.jpg", root / "b" / "p.jpg", root / "b" / "p.png"]


def test_predict_keeps_every_answer_of_inputs_sharing_a_name(detector, packed_scenes, tmp_path):
    inputs = _clashing(packed_scenes, tmp_path / "in")
    done = run_cli("predict", detector, *inputs, "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["a__p.jpg", "a__p.json", "b__p-2.jpg", "b__p-2.json", "b__p.jpg", "b__p.json"], written
    assert "predicted 3 image(s)" in done.stdout and done.stdout.count("shares its name") == 3


def test_invoke_keeps_every_answer_skips_bad_images_and_refuses_other_schemes(detector, packed_scenes, tmp_path):
    inputs = _clashing(packed_scenes, tmp_path / "in")
    broken = tmp_path / "in" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    server = Server(detector, workers=1)
    try:
        url = f"http://127.0.0.1:{server.port}"
        done = run_cli("invoke", url, inputs[0], broken, tmp_path / "missing.jpg", *inputs[1:], "--out", tmp_path / "out")
        assert done.returncode == 0, done.stderr
        assert sum(line.startswith("skipped ") for line in done.stdout.splitlines()) == 2 and "3 answered, 2 skipped" in done.stdout
        written = sorted(p.name for p in (tmp_path / "out").iterdir() if p.suffix == ".json")
        assert written == ["a__p.json", "b__p-2.json", "b__p.json"]
        assert all("prediction" in json.loads((tmp_path / "out" / name).read_text()) for name in written)
        done = run_cli("invoke", url, broken, "--out", tmp_path / "none")
        assert done.returncode == 1 and "none of the 1 image(s) was answered" in done.stderr
    finally:
        assert server.stop() == 0
    for url, message in [("ftp://x", "the scheme ftp:// is not supported"), ("127.0.0.1:8080", "is not supported"),
                         ("http://", "no host")]:
        done = run_cli("invoke", url, inputs[0], "--out", tmp_path / "o2")
        assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr, (url, done.stderr)


def test_predict_of_an_archive_leaves_no_unpacked_copy(detector, packed_scenes, tmp_path):
    """After success, an error and SIGTERM alike, TMPDIR holds nothing of the unpacked model.tar.gz."""
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for f in detector.iterdir():
            if f.is_file():
                tar.add(f, arcname=f.name)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    photos = _clashing(packed_scenes, tmp_path / "in")
    env = dict(os.environ, TMPDIR=str(scratch))
    command = [sys.executable, "-m", "magiccards.cli", "predict", str(archive)]
    done = subprocess.run([*command, *map(str, photos), "--out", str(tmp_path / "out")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert list(scratch.iterdir()) == []
    done = subprocess.run([*command, str(tmp_path / "nothing.jpg"), "--out", str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "does not exist" in done.stderr and list(scratch.iterdir()) == []
    video = tmp_path / "in" / "frames"
    video.mkdir()
    for i in range(400):
        (video / f"f{i}.jpg").write_bytes(photos[0].read_bytes())
    process = subprocess.Popen([*command, str(video), "--out", str(tmp_path / "out2")], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "out2").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM and "Traceback" not in stderr, stderr
    assert list(scratch.iterdir()) == []
