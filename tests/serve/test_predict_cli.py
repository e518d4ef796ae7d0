"""`magiccards predict` (images, folders, a video) and `magiccards invoke` (a running endpoint), as users run them."""
import json

import cv2
import numpy as np
from PIL import Image

from ..helpers import read_all, run_cli
from .test_server import Server


def _photos(packed, folder, n=3):
    folder.mkdir(parents=True)
    for i, (_, jpeg) in enumerate(read_all(packed / "validation.rec")[:n]):
        (folder / f"photo-{i}.jpg").write_bytes(jpeg)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_predict_images_folders_and_a_video(detector, packed_scenes, tmp_path):
    photos = _photos(packed_scenes, tmp_path / "photos")
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (128, 128))
    for _, jpeg in read_all(packed_scenes / "validation.rec")[:4]:
        writer.write(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR))
    writer.release()
    r = run_cli("predict", detector, photos, video, "--out", tmp_path / "out", "--every", "2")
    assert r.returncode == 0, r.stderr
    assert "predicted 3 image(s) and 2 frame(s)" in r.stdout
    answer = json.loads((tmp_path / "out" / "photo-0.json").read_text())
    assert all(len(row) == 6 and row[1] >= 0.3 for row in answer["prediction"])
    assert len(answer["names"]) == len(answer["prediction"])
    assert Image.open(tmp_path / "out" / "photo-0.jpg").size == (128, 128)
    frames = json.loads((tmp_path / "out" / "clip.json").read_text())["frames"]
    assert [f["frame"] for f in frames] == [0, 2]
    assert sorted(p.name for p in (tmp_path / "out" / "clip").iterdir()) == ["frame-000000.jpg", "frame-000002.jpg"]


def test_predict_classification_and_bad_arguments(classifier, packed_cards, tmp_path):
    photos = _photos(packed_cards, tmp_path / "photos", n=2)
    r = run_cli("predict", classifier, photos / "photo-1.jpg", "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    answer = json.loads((tmp_path / "out" / "photo-1.json").read_text())
    assert answer["predicted_label"] in answer["labels"] and abs(sum(answer["prediction"]) - 1) < 1e-4
    for args, message in ((["nowhere.jpg"], "input nowhere.jpg does not exist"),
                          ([str(photos), "--top-k", "0"], "--top-k, --every and --frames are at least 1")):
        r = run_cli("predict", classifier, *args, "--out", tmp_path / "out2")
        assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = run_cli("predict", tmp_path / "no-model", photos, "--out", tmp_path / "out3")
    assert r.returncode == 1 and "does not exist" in r.stderr


def test_invoke_draws_an_endpoints_answer(detector, packed_scenes, tmp_path):
    photos = _photos(packed_scenes, tmp_path / "photos", n=1)
    server = Server(detector, workers=1)
    try:
        r = run_cli("invoke", f"http://127.0.0.1:{server.port}", photos / "photo-0.jpg", "--out", tmp_path / "out",
                    "--wait", "30")
    finally:
        assert server.stop() == 0
    assert r.returncode == 0, r.stderr
    answer = json.loads((tmp_path / "out" / "photo-0.json").read_text())
    assert "names" in answer and all(row[1] >= 0.3 for row in answer["prediction"])
    assert (tmp_path / "out" / "photo-0.jpg").is_file()
    r = run_cli("invoke", "http://127.0.0.1:9", photos / "photo-0.jpg", "--out", tmp_path / "out")
    assert r.returncode == 1 and "cannot reach http://127.0.0.1:9" in r.stderr
