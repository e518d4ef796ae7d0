"""The predictor: validation's preprocessing, the network's own answers, boxes normalised, batching, EXIF."""
import io
import struct
import zlib

import mxnet as mx
import numpy as np
import pytest
from gluoncv.data.transforms.presets.ssd import SSDDefaultValTransform
from magiccards.serve.backends import BackendError
from magiccards.serve.images import ImageError, decode_image
from magiccards.serve.predictor import Predictor
from magiccards.serve.preprocess import network_input
from magiccards.train.classification import eval_transform
from magiccards.train.hyperparameters import resolve
from PIL import Image

from ..helpers import read_all

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _photo(h, w, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)  # smooth, like a photo
    return np.asarray(Image.fromarray(base).resize((w, h), Image.BILINEAR))


@pytest.mark.parametrize("shape, size", [("3,32,32", (53, 37)), ("3,64,64", (300, 200)), ("3,48,40", (90, 120)),
                                         ("3,224,224", (224, 224))])
def test_classification_preprocessing_is_validations(shape, size):
    hp = resolve({"task": "classification", "image_shape": shape})
    image = _photo(*size)
    expected = eval_transform(hp)(mx.nd.array(image, dtype="uint8")).asnumpy()
    got = network_input(image, "classification", hp.image_shape, MEAN, STD)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 0.05 and np.abs(got - expected).mean() < 0.002


@pytest.mark.parametrize("size", [(90, 120), (300, 400), (128, 128)])
def test_detection_preprocessing_is_validations(size):
    image = _photo(*size, seed=3)
    expected = SSDDefaultValTransform(128, 128)(mx.nd.array(image, dtype="uint8"), np.zeros((1, 5)))[0].asnumpy()
    got = network_input(image, "detection", (3, 128, 128), MEAN, STD)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 0.05 and np.abs(got - expected).mean() < 0.002


def _validation_images(packed, n=12):
    return [np.asarray(Image.open(io.BytesIO(image)).convert("RGB"))
            for _, image in read_all(packed / "validation.rec")[:n]]


def test_classifier_answers_as_the_network_does(classifier, packed_cards):
    predictor = Predictor(classifier)
    images = _validation_images(packed_cards)
    results = predictor.predict(images)
    net = mx.gluon.SymbolBlock.imports(str(predictor.model.symbol_file), ["data"], str(predictor.model.params_file))
    hp = resolve({"task": "classification", "image_shape": "3,32,32"})
    batch = mx.nd.stack(*[eval_transform(hp)(mx.nd.array(i, dtype="uint8")) for i in images])
    expected = mx.nd.softmax(net(batch)).asnumpy()
    got = np.array([r.probabilities for r in results])
    assert got.shape == (len(images), 4) and np.allclose(got.sum(axis=1), 1, atol=1e-5)
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).mean() >= 0.9
    assert np.abs(got - expected).max() < 0.1
    assert results[0].classes == list(predictor.model.classes)


def test_a_batch_gives_the_results_of_single_images(classifier, detector, packed_cards, packed_scenes):
    for model, packed in ((classifier, packed_cards), (detector, packed_scenes)):
        predictor = Predictor(model)
        images = _validation_images(packed, 5)
        together = predictor.predict(images)
        alone = [predictor.predict([i])[0] for i in images]
        if predictor.task == "classification":
            assert np.allclose([r.probabilities for r in together], [r.probabilities for r in alone], atol=1e-5)
        else:
            for a, b in zip(together, alone):
                assert len(a) == len(b) and np.allclose([d.as_row() for d in a], [d.as_row() for d in b], atol=1e-4)


def test_detector_boxes_are_normalised_to_the_original_image(trained_detector):
    predictor = Predictor(trained_detector)
    scenes = _validation_images(trained_detector.parent.parent / "rec", 10)
    # the scene the detector is surest about (a weak detector may miss one scene: the test is about the boxes)
    image = max(scenes, key=lambda s: max([d.score for d in predictor.predict([s], score_threshold=0.0)[0]] or [0]))
    wide = np.asarray(Image.fromarray(image).resize((256, 128)))  # the same scene, twice as wide
    small, large = predictor.predict([image, wide], score_threshold=0.1)
    assert small, "the trained detector finds something in a validation scene"
    for found in (small, large):
        for d in found:
            assert 0 <= d.box[0] < d.box[2] <= 1 and 0 <= d.box[1] < d.box[3] <= 1
            assert d.name == predictor.classes[d.class_id] and 0.1 <= d.score <= 1
    # the same scene stretched: its confident boxes are found at the same normalised places (a box left in
    # network pixels, or normalised by the wrong side, would be off by half the image); the order of close
    # scores may change with the resampling
    for d in small[:3]:
        assert any(e.class_id == d.class_id and np.abs(np.array(e.box) - np.array(d.box)).max() < 0.1
                   for e in large), (d, large[:5])
    assert len(predictor.predict([image], score_threshold=0.0, top_k=2)[0]) <= 2


def test_exif_orientation_is_applied(classifier):
    upright = _photo(40, 60, seed=5)
    stored = Image.fromarray(upright).transpose(Image.ROTATE_90)  # a camera stores it sideways ...
    exif = Image.Exif()
    exif[0x0112] = 6  # ... and says "rotate 90 clockwise to view"
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", exif=exif, quality=95)
    decoded = decode_image(buffer.getvalue())
    assert decoded.shape == upright.shape
    assert np.abs(decoded.astype(int) - upright).mean() < 8


def _png_header_only(width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_decompression_bombs_and_garbage_are_refused_before_decoding():
    with pytest.raises(ImageError) as info:
        decode_image(_png_header_only(30000, 30000))
    assert info.value.too_large and "30000 x 30000 pixels" in str(info.value)
    for data, message in ((b"", "empty"), (b"not an image", "not an image"),
                          (_png_header_only(64, 64), "cannot be decoded")):
        with pytest.raises(ImageError, match=message):
            decode_image(data)


def test_backends_are_chosen_by_name(classifier, monkeypatch):
    monkeypatch.setenv("MAGICCARDS_BACKEND", "tensorflow")
    with pytest.raises(BackendError, match="backend 'tensorflow' is not one of auto, mxnet, onnxruntime, openvino"):
        Predictor(classifier)
    monkeypatch.setenv("MAGICCARDS_BACKEND", "onnxruntime")
    with pytest.raises(BackendError, match="needs an export of the model"):
        Predictor(classifier)
    monkeypatch.setenv("MAGICCARDS_BACKEND", "auto")
    assert Predictor(classifier).backend.name == "mxnet"  # no export has passed its parity check


def test_edge_backends_plug_in_behind_the_same_interface(classifier, packed_cards, tmp_path):
    """An ONNX export and its OpenVINO IR in exports/ (laid out as `magiccards export` writes them), each
    with a parity record: `auto` takes the fastest that passed for these parameters, and every backend
    gives the MXNet answers."""
    import json
    import shutil

    import openvino as ov

    from magiccards.model_dir import open_model_dir
    model = tmp_path / "model"
    shutil.copytree(classifier, model)
    opened = open_model_dir(model)
    onnx_file, ir_file = opened.export_file("onnx", "fp32"), opened.export_file("openvino", "fp32")
    onnx_file.parent.mkdir(parents=True)
    mx.onnx.export_model(str(model / "image-classification-symbol.json"), str(model / "image-classification-0000.params"),
                         in_shapes=[(1, 3, 32, 32)], in_types=[np.float32], onnx_file_path=str(onnx_file),
                         dynamic=True, dynamic_input_shapes=[(None, 3, 32, 32)])
    ov.save_model(ov.convert_model(str(onnx_file)), str(ir_file),
                  compress_to_fp16=False)  # save_model halves the weights unless told not to
    records = [{"format": "onnx", "precision": "fp32", "passed": True,
                "files_sha256": opened.export_digests("onnx", "fp32")},
               {"format": "openvino", "precision": "fp32", "passed": False,
                "files_sha256": opened.export_digests("openvino", "fp32")}]
    (opened.exports_dir / "parity.json").write_text(json.dumps(records))
    images = _validation_images(packed_cards, 6)
    reference = np.array([r.probabilities for r in Predictor(model, backend="mxnet").predict(images)])
    auto = Predictor(model)
    assert auto.backend.name == "onnxruntime"  # openvino's parity did not pass: not chosen by auto
    for predictor in (auto, Predictor(model, backend="openvino"), Predictor(model, backend="openvino:fp32")):
        assert predictor.backend.ran_at == "fp32"  # not the bf16 OpenVINO would pick on its own here
        got = np.array([r.probabilities for r in predictor.predict(images)])
        assert np.abs(got - reference).max() < 1e-4, predictor.backend.name
    # a passed record for other parameters (the model was retrained over the same folder) is not trusted
    records[0]["files_sha256"]["image-classification-0000.params"] = "0" * 64
    (opened.exports_dir / "parity.json").write_text(json.dumps(records))
    assert Predictor(model).backend.name == "mxnet"
    with pytest.raises(BackendError, match="--format openvino --precision int8"):
        Predictor(model, backend="openvino:int8")


def test_a_workers_thread_share_wins_over_an_inherited_omp_setting(classifier):
    """A server worker given one core must not run the OpenMP threads its parent asked for (two workers with
    two spinning OpenMP threads each on two cores ran 15x slower)."""
    import os
    import subprocess
    import sys
    code = ("import os, sys; from magiccards.serve.backends import MXNetBackend; "
            "from magiccards.model_dir import open_model_dir; "
            f"MXNetBackend(open_model_dir({str(classifier)!r}), threads=1); print(os.environ['OMP_NUM_THREADS'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "4"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "1"
