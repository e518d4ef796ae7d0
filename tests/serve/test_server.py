"""The inference server over real HTTP: the SageMaker hosting contract, the built-in formats, bad input."""
from __future__ import annotations

import base64
import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time

import mxnet as mx
import pytest
from PIL import Image

from ..helpers import read_all
from .test_predictor import _png_header_only


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`magiccards serve MODEL` in a subprocess, as a user starts it."""

    def __init__(self, model, workers=2, **env):
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "magiccards.cli", "serve", str(model), "--port", str(self.port),
             "--workers", str(workers)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=dict(os.environ, **{k: str(v) for k, v in env.items()}))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited: {self.proc.stdout.read()}")
            try:
                if self.request("GET", "/ping")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("the server did not answer /ping within 120 s")

    def request(self, method, path, body=None, headers=None, timeout=60):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read(), dict(response.getheaders())
        finally:
            conn.close()

    def invoke(self, body, content_type="image/jpeg", accept=None, attributes=None):
        headers = {"Content-Type": content_type}
        if accept:
            headers["Accept"] = accept
        if attributes:
            headers["X-Amzn-SageMaker-Custom-Attributes"] = attributes
        status, data, _ = self.request("POST", "/invocations", body, headers)
        return status, data

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        finally:
            self.proc.stdout.close()


def _jpegs(packed, n):
    return [image for _, image in read_all(packed / "validation.rec")[:n]]


@pytest.fixture(scope="module")
def classifier_server(classifier):
    server = Server(classifier, SAGEMAKER_MAX_PAYLOAD_IN_MB=1)
    yield server
    assert server.stop() == 0


@pytest.fixture(scope="module")
def detector_server(detector):
    server = Server(detector)
    yield server
    assert server.stop() == 0


def test_ping_and_execution_parameters(classifier_server):
    status, body, _ = classifier_server.request("GET", "/ping")
    assert status == 200 and body == b""
    status, body, _ = classifier_server.request("GET", "/execution-parameters")
    assert status == 200
    assert json.loads(body) == {"MaxConcurrentTransforms": 2, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 1}


@pytest.mark.parametrize("content_type", ["image/jpeg", "application/x-image"])
def test_classification_answers_the_built_in_format(classifier_server, packed_cards, content_type):
    status, body = classifier_server.invoke(_jpegs(packed_cards, 1)[0], content_type)
    assert status == 200
    probabilities = json.loads(body)
    assert len(probabilities) == 4 and abs(sum(probabilities) - 1) < 1e-4


def test_classification_png_and_verbose_jsonlines(classifier_server, packed_cards, classifier):
    png = io.BytesIO()
    Image.open(io.BytesIO(_jpegs(packed_cards, 1)[0])).save(png, "PNG")
    status, body = classifier_server.invoke(png.getvalue(), "image/png", accept="application/jsonlines; verbose=true")
    assert status == 200 and body.endswith(b"\n")
    answer = json.loads(body)
    classes = (classifier / "classes.txt").read_text().splitlines()
    assert answer["labels"] == classes and answer["predicted_label"] in classes and len(answer["prediction"]) == 4


def test_a_batch_of_base64_images_in_one_request(classifier_server, packed_cards):
    images = [base64.b64encode(i).decode() for i in _jpegs(packed_cards, 3)]
    status, body = classifier_server.invoke(json.dumps(images), "application/json")
    assert status == 200 and len(json.loads(body)) == 3
    status, body = classifier_server.invoke(json.dumps({"instances": images[:2]}), "application/json",
                                            accept="application/jsonlines")
    assert status == 200 and len(body.decode().splitlines()) == 2


def test_detection_answers_the_built_in_format(detector_server, packed_scenes, detector):
    status, body = detector_server.invoke(_jpegs(packed_scenes, 1)[0])
    assert status == 200
    rows = json.loads(body)["prediction"]
    assert rows and all(len(r) == 6 for r in rows)
    for cls, score, x0, y0, x1, y1 in rows:
        assert cls in (0.0, 1.0) and 0 <= score <= 1 and 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
    status, body = detector_server.invoke(_jpegs(packed_scenes, 1)[0], attributes="score_threshold=0.3;top_k=2;names=true")
    answer = json.loads(body)
    classes = (detector / "classes.txt").read_text().splitlines()
    assert len(answer["prediction"]) <= 2 and all(r[1] >= 0.3 for r in answer["prediction"])
    assert answer["names"] == [classes[int(r[0])] for r in answer["prediction"]]


def test_batch_transform_recordio_split(detector_server, packed_scenes):
    """SplitType=RecordIO: the body holds whole records, as pack writes them (and as bare images)."""
    buffer = io.BytesIO()
    records = [mx.recordio.pack(header, image) for header, image in read_all(packed_scenes / "validation.rec")[:3]]
    path = "/tmp/magiccards-test-batch.rec"
    writer = mx.recordio.MXRecordIO(path, "w")
    for r in records + [_jpegs(packed_scenes, 1)[0]]:
        writer.write(r)
    writer.close()
    with open(path, "rb") as f:
        buffer.write(f.read())
    os.unlink(path)
    status, body = detector_server.invoke(buffer.getvalue(), "application/x-recordio", accept="application/jsonlines")
    assert status == 200
    lines = [json.loads(line) for line in body.decode().splitlines()]
    assert len(lines) == 4 and all("prediction" in line for line in lines)
    assert lines[0] == lines[3]  # the first record's image, packed and bare


def _truncated(jpeg):
    return jpeg[: len(jpeg) // 3]


@pytest.mark.parametrize("body, content_type, accept, status, message", [
    (b"", "image/jpeg", None, 400, "the request body is empty"),
    (b"\x00\x01 not an image", "image/jpeg", None, 400, "not an image in a known format"),
    ("TRUNCATED", "image/jpeg", None, 400, "cannot be decoded"),
    (_png_header_only(30000, 30000), "image/png", None, 413, "30000 x 30000 pixels"),
    (b"a,b\n1,2\n", "text/csv", None, 415, "Content-Type 'text/csv' is not supported"),
    ("JPEG", "image/jpeg", "text/csv", 406, "Accept 'text/csv' is not served"),
    (b"x" * (1 << 20) + b"x", "image/jpeg", None, 413, "more than the 1,048,576 allowed"),
    (b"[not json", "application/json", None, 400, "not valid JSON"),
    (b'["!!!not base64"]', "application/json", None, 400, "not valid base64"),
    (b'{"images": 3}', "application/json", None, 400, "takes a list of base64-encoded images"),
    (b"\x01\x02\x03\x04garbage", "application/x-recordio", None, 400, "application/x-recordio"),
])
def test_bad_requests_are_clear_json_errors_and_the_next_request_succeeds(
        classifier_server, packed_cards, body, content_type, accept, status, message):
    jpeg = _jpegs(packed_cards, 1)[0]
    body = {"TRUNCATED": _truncated(jpeg), "JPEG": jpeg}.get(body, body) if isinstance(body, str) else body
    got, answer = classifier_server.invoke(body, content_type, accept=accept)
    assert got == status, answer
    assert message in json.loads(answer)["error"]
    assert classifier_server.invoke(jpeg)[0] == 200


def test_bad_custom_attributes(classifier_server, packed_cards):
    status, body = classifier_server.invoke(_jpegs(packed_cards, 1)[0], attributes="top_k=many")
    assert status == 400 and "top_k an integer" in json.loads(body)["error"]


def test_ping_is_not_held_behind_inference(classifier):
    """A long batch is in flight in the only worker; /ping still answers."""
    server = Server(classifier, workers=1)
    try:
        jpeg = Image.new("RGB", (1000, 1000), (120, 30, 30))
        buffer = io.BytesIO()
        jpeg.save(buffer, "JPEG")
        batch = json.dumps([base64.b64encode(buffer.getvalue()).decode()] * 120)  # within the request's 128 MP
        done = {}
        worker = threading.Thread(target=lambda: done.update(r=server.invoke(batch, "application/json")))
        worker.start()
        time.sleep(0.3)
        status, _, _ = server.request("GET", "/ping", timeout=10)
        still_busy = worker.is_alive()
        worker.join(120)
        assert status == 200 and still_busy and done["r"][0] == 200
    finally:
        assert server.stop() == 0


def test_a_request_that_outlives_the_timeout_gets_504(classifier, packed_cards):
    server = Server(classifier, workers=1, SAGEMAKER_MODEL_SERVER_TIMEOUT=0.05)
    try:
        batch = json.dumps([base64.b64encode(_jpegs(packed_cards, 1)[0]).decode()] * 200)
        status, body = server.invoke(batch, "application/json")
        assert status == 504 and "took longer than 0.05 s" in json.loads(body)["error"]
        assert server.request("GET", "/ping")[0] == 200
    finally:
        assert server.stop() == 0


def test_sigterm_lets_the_request_in_flight_finish(classifier, packed_cards):
    """The signal arrives while a batch is being answered: the answer still comes, whole. The batch grows
    until it is still running when the signal is sent (machines differ in speed by far)."""
    server = Server(classifier, workers=1)
    image = base64.b64encode(_jpegs(packed_cards, 1)[0]).decode()
    for size in (600, 2400, 9600):
        done = {}
        worker = threading.Thread(target=lambda: done.update(r=server.invoke(json.dumps([image] * size),
                                                                             "application/json")))
        worker.start()
        time.sleep(0.3)
        if worker.is_alive():
            break
        assert done["r"][0] == 200
    assert worker.is_alive(), "every batch finished before the signal"
    assert server.stop() == 0
    worker.join(120)
    assert done["r"][0] == 200 and len(json.loads(done["r"][1])) == size


def test_a_model_tar_gz_is_served(classifier, packed_cards, tmp_path):
    folder = tmp_path / "opt-ml-model"
    folder.mkdir()
    with tarfile.open(folder / "model.tar.gz", "w:gz") as tar:
        for f in classifier.iterdir():
            tar.add(f, arcname=f.name)
    server = Server(folder, workers=1)
    try:
        assert server.invoke(_jpegs(packed_cards, 1)[0])[0] == 200
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("damage, message", [
    ("missing", "does not exist"),
    ("no params", "lacks image-classification-0000.params"),
    ("garbage params", "cannot be loaded by MXNet"),
    ("escaping archive", "points outside the archive's folder"),
])
def test_a_bad_model_ends_the_server_with_one_clear_line(classifier, tmp_path, damage, message):
    model = tmp_path / "model"
    if damage != "missing":
        shutil.copytree(classifier, model)
    if damage == "no params":
        (model / "image-classification-0000.params").unlink()
    elif damage == "garbage params":
        (model / "image-classification-0000.params").write_bytes(b"\x00garbage" * 100)
    elif damage == "escaping archive":
        shutil.rmtree(model)
        model.mkdir()
        with tarfile.open(model / "model.tar.gz", "w:gz") as tar:
            info = tarfile.TarInfo("../../escape.txt")
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
    r = subprocess.run([sys.executable, "-m", "magiccards.cli", "serve", str(model), "--port", str(_free_port()),
                        "--workers", "1"], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
