"""Two-stage models: `combine`, the crop rule shared with `pack --crops`, predicting, serving, refusals."""
from __future__ import annotations

import json
import shutil
import tarfile

import numpy as np
import pytest
from PIL import Image

from magiccards.data.crops import RULE, crop_normalised
from magiccards.data.load import load
from magiccards.data.pack import pack
from magiccards.data.synth import synth
from magiccards.errors import ModelDirError
from magiccards.model_dir import CARD, TwoStageDir, open_model, open_model_dir
from magiccards.serve.images import decode_image
from magiccards.serve.loader import load as load_predictor

from ..helpers import read_all, run_cli
from .test_server import Server


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def test_two_stage_names_the_cards_it_finds_in_scenes_whose_boxes_are_known(two_stage, tmp_path):
    """New scenes drawn as the detector's were: every card found is named right by its best box, with the
    classifier's class order (the reverse of the detector's). Found: a box at IoU >= 0.65 (the small test
    detector's boxes are loose; the square around a box at IoU 0.5 can hold more of another card than of its own)."""
    synth(tmp_path / "scenes", task="detection", count=16, classes=2, size=128, max_cards=2, seed=41, workers=1,
          progress=False)
    dataset = load(tmp_path / "scenes", classes=tmp_path / "scenes" / "classes.txt")
    found = right = cards = 0
    with load_predictor(two_stage) as predictor:
        assert predictor.classes == list(dataset.classes)[::-1] and predictor.model.task == "two-stage"
        for sample in dataset.samples:
            image = decode_image(sample.path.read_bytes())
            h, w = image.shape[:2]
            answer = predictor.predict([image], score_threshold=0.0)[0]
            assert all(0 <= d.class_id < 2 and d.name == predictor.classes[d.class_id] for d in answer)
            assert [d.score for d in answer] == sorted((d.score for d in answer), reverse=True)
            for box in sample.boxes:
                cards += 1
                truth = (box.xmin / w, box.ymin / h, box.xmax / w, box.ymax / h)
                matches = [d for d in answer if _iou(d.box, truth) >= 0.65]
                if matches:
                    found += 1
                    right += matches[0].name == dataset.classes[box.cls]
    assert found >= 2, f"the detector found {found} of {cards} cards"
    assert right == found, f"{found - right} of the {found} cards found were named wrong"


def test_the_crop_served_is_the_crop_pack_writes(tmp_path):
    """The square a two-stage model cuts around a box has the pixels `pack --crops` stores for that box (up to
    JPEG at quality 100), also where the square leaves the photo."""
    rng = np.random.default_rng(5)
    photo = (rng.random((180, 260, 3)) * 255).astype(np.uint8)
    photo = np.asarray(Image.fromarray(photo).resize((260, 180), Image.BILINEAR).filter(
        __import__("PIL.ImageFilter").ImageFilter.GaussianBlur(2)))
    folder = tmp_path / "photos"
    (folder / "images").mkdir(parents=True)
    (folder / "annotations").mkdir()
    Image.fromarray(photo).save(folder / "images" / "p.png")
    boxes = [(2, 10, 60, 110), (150, 40, 250, 170)]  # both squares leave the photo
    objects = "".join(f"<object><name>card</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>"
                      f"<ymax>{b[3]}</ymax></bndbox></object>" for b in boxes)
    (folder / "annotations" / "p.xml").write_text(
        f"<annotation><filename>p.png</filename><size><width>260</width><height>180</height><depth>3</depth></size>"
        f"{objects}</annotation>")
    pack(folder, tmp_path / "rec", val_fraction=0, crops=True, quality=100, workers=1, progress=False,
         log=lambda line: None)
    assert json.loads((tmp_path / "rec" / "crop-rule.json").read_text()) == RULE
    stored = [np.asarray(Image.open(__import__("io").BytesIO(data)).convert("RGB"))
              for _, data in read_all(tmp_path / "rec" / "train.rec")]
    served = [crop_normalised(photo, (b[0] / 260, b[1] / 180, b[2] / 260, b[3] / 180)) for b in boxes]
    assert sorted(s.shape for s in stored) == sorted(s.shape for s in served)
    for crop, b in zip(served, boxes):
        twin = next(s for s in stored if s.shape == crop.shape).astype(int)
        error = np.abs(twin - crop.astype(int)).mean()
        shifted = crop_normalised(photo, ((b[0] + 3) / 260, b[1] / 180, (b[2] + 3) / 260, b[3] / 180))
        assert error < 2.0 and np.abs(twin - shifted.astype(int)).mean() > 3 * error  # JPEG's loss only


def test_a_two_stage_model_opens_as_one_and_single_network_readers_refuse_it(two_stage, crop_classifier):
    model = open_model(two_stage)
    assert isinstance(model, TwoStageDir) and model.classes == open_model_dir(crop_classifier).classes
    assert model.detector.task == "detection" and model.classifier.task == "classification"
    assert json.loads((two_stage / CARD).read_text())["crop"] == RULE
    assert open_model_dir(crop_classifier).card["dataset"]["crops"] == RULE  # pack --crops -> the job -> its card
    with pytest.raises(ModelDirError, match="two-stage model"):
        open_model_dir(two_stage)


def _edited_copy(model, folder, edit):
    shutil.copytree(model, folder)
    card = json.loads((folder / CARD).read_text())
    edit(card)
    (folder / CARD).write_text(json.dumps(card))
    return folder


def test_combine_refuses_what_cannot_work_together(two_stage, trained_detector, crop_classifier, tmp_path):
    wide = _edited_copy(crop_classifier, tmp_path / "wide", lambda c: c["input"].update(shape=[1, 3, 48, 64]))
    other_rule = _edited_copy(crop_classifier, tmp_path / "rule",
                              lambda c: c["dataset"].update(crops=dict(RULE, margin=0.25)))
    exported = tmp_path / "exported"
    shutil.copytree(crop_classifier, exported)
    r = run_cli("export", exported, "--format", "onnx", "--precision", "fp32", "--validation",
                crop_classifier.parent.parent / "rec" / "validation.rec")
    assert r.returncode == 0, r.stderr
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    cases = [
        ((two_stage, crop_classifier), "is itself a two-stage model"),
        ((crop_classifier, crop_classifier), "is a classification model"),
        ((trained_detector, trained_detector), "is a detection model"),
        ((trained_detector, wide), "takes 64x48 images"),
        ((trained_detector, other_rule), "learnt from crops cut by"),
        ((trained_detector, exported), "mismatched exports: the classifier has onnx-fp32 and the detector has not"),
    ]
    for (detector, classifier), message in cases:
        out = tmp_path / "out"
        r = run_cli("combine", detector, classifier, "--out", out)
        assert r.returncode == 1 and message in r.stderr, (message, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()
    r = run_cli("combine", trained_detector, crop_classifier, "--out", crop_classifier / "two")
    assert r.returncode == 1 and "lies inside the model directory" in r.stderr and not (crop_classifier / "two").exists()
    r = run_cli("combine", trained_detector, crop_classifier, "--out", occupied)
    assert r.returncode == 1 and "already exists" in r.stderr and sorted(p.name for p in occupied.iterdir()) == ["keep.txt"]
    r = run_cli("combine", trained_detector, crop_classifier, "--out", tmp_path / "m", "--classes-per-box", "3")
    assert r.returncode == 1 and "classes per box 3" in r.stderr and not (tmp_path / "m").exists()


def test_a_two_stage_archive_is_served_and_predicted_as_a_detector(trained_detector, crop_classifier, two_stage,
                                                                  tmp_path):
    """`combine --out model.tar.gz` (what SageMaker hosting gets), served: /invocations answers in the detector's
    format what the predictor answers; `predict` draws and writes the same."""
    archive = tmp_path / "model.tar.gz"
    r = run_cli("combine", trained_detector, crop_classifier, "--out", archive, "--box-threshold", "0.01")
    assert r.returncode == 0, r.stderr
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert CARD in names and f"detector/{CARD}" in names and f"classifier/{CARD}" in names
    assert not any(name.endswith("training-state.params") for name in names)
    synth(tmp_path / "scene", task="detection", count=2, classes=2, size=128, max_cards=2, seed=43, workers=1,
          progress=False)
    photo = sorted((tmp_path / "scene" / "images").iterdir())[0]
    with load_predictor(two_stage) as predictor:
        expected = predictor.predict([decode_image(photo.read_bytes())], score_threshold=0.0, top_k=5)[0]
    assert expected, "the two-stage model found no card"
    server = Server(archive, workers=1)
    try:
        status, body = server.invoke(photo.read_bytes(), attributes="top_k=5")
    finally:
        server.stop()
    assert status == 200
    rows = json.loads(body)["prediction"]
    assert len(rows) == len(expected)
    for row, d in zip(rows, expected):
        assert row[0] == d.class_id and abs(row[1] - d.score) < 1e-4
        assert np.allclose(row[2:], d.box, atol=1e-4) and 0 <= row[2] < row[4] <= 1
    out = tmp_path / "predicted"
    r = run_cli("predict", archive, photo, "--out", out, "--score-threshold", f"{expected[-1].score - 1e-6}")
    assert r.returncode == 0 and "two-stage model" in r.stdout, r.stderr
    written = json.loads((out / f"{photo.stem}.json").read_text())
    assert written["names"][:len(expected)] == [d.name for d in expected]
    assert (out / f"{photo.stem}.jpg").stat().st_size > 1000


def test_export_of_a_two_stage_model_checks_each_stage_and_the_whole(two_stage, tmp_path):
    """Both stages exported (each with its own parity record on its own job's validation records), then the
    whole checked end to end on the detector's validation photos; serving then runs both stages' exports."""
    model = tmp_path / "model"
    shutil.copytree(two_stage, model)
    r = run_cli("export", model, "--format", "onnx", "--images", "40")
    assert r.returncode == 0, r.stderr
    assert "end to end: parity of onnx fp32 (ran fp32) on 40 validation images" in r.stdout
    (record,) = json.loads((model / "parity.json").read_text())
    assert record["passed"] is True and abs(record["map_points_lost"]) <= 1.0 and record["map_mxnet"] > 0
    assert {s: v["passed"] for s, v in record["stages"].items()} == {"detector": True, "classifier": True}
    for stage in ("detector", "classifier"):
        (stage_record,) = json.loads((model / stage / "exports" / "parity.json").read_text())
        assert stage_record["passed"] is True and (model / stage / "exports" / "onnx-fp32" / "model.onnx").is_file()
    photo = next((model.parent.parent / "trained-detector0" / "images" / "images").glob("*.jpg"), None)
    image = decode_image(photo.read_bytes()) if photo else np.zeros((128, 128, 3), np.uint8)
    with load_predictor(model, backend="auto") as exported, load_predictor(model, backend="mxnet") as reference:
        assert exported.detector.backend.name == exported.classifier.backend.name == "onnxruntime"
        got, expected = exported.predict([image], top_k=4)[0], reference.predict([image], top_k=4)[0]
    assert [d.class_id for d in got] == [d.class_id for d in expected]
    assert np.allclose([d.score for d in got], [d.score for d in expected], atol=1e-3)
    r = run_cli("export", model, "--format", "onnx", "--classifier-validation", tmp_path / "missing.rec")
    assert r.returncode == 1 and "missing.rec does not exist" in r.stderr


@pytest.mark.parametrize("damage, message", [
    (lambda m: shutil.rmtree(m / "classifier"), "lacks its classifier (classifier/model-card.json)"),
    (lambda m: _edit_card(m, lambda c: c.update(classes_per_box="two")), "are not numbers"),
    (lambda m: _edit_card(m, lambda c: c.update(classes_per_box=7)), "classes per box 7 is not from 1 to"),
    (lambda m: _edit_card(m, lambda c: c["nms"].update(iou=0)), "is not an IoU in (0, 1]"),
    (lambda m: _edit_card(m, lambda c: c["crop"].update(margin=0.3)), "cuts its crops by"),
    (lambda m: (m / "classes.txt").write_text("one\ntwo\n"), "differs from classifier/classes.txt"),
    (lambda m: _swap_stages(m), "holds a classification model where the two-stage model's detector"),
    (lambda m: _nest(m), "is itself a two-stage model"),
])
def test_a_damaged_two_stage_model_is_refused_in_one_line(two_stage, tmp_path, damage, message):
    """Files that contradict each other, or a stage missing: `predict` (and every command opening a model)
    says which file, in one line, and writes nothing."""
    model = tmp_path / "model"
    shutil.copytree(two_stage, model)
    damage(model)
    r = run_cli("predict", model, tmp_path, "--out", tmp_path / "out")
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def _edit_card(model, edit):
    card = json.loads((model / CARD).read_text())
    edit(card)
    (model / CARD).write_text(json.dumps(card))


def _swap_stages(model):
    (model / "detector").rename(model / "d")
    (model / "classifier").rename(model / "detector")
    (model / "d").rename(model / "classifier")


def _nest(model):
    shutil.copytree(model, model.parent / "inner")
    shutil.rmtree(model / "detector")
    (model.parent / "inner").rename(model / "detector")
