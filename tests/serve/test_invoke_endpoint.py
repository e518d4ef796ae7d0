"""`invoke endpoint:NAME`: the same request as `invoke URL`, through SageMaker Runtime's InvokeEndpoint.

moto's sagemaker-runtime answers every InvokeEndpoint with a canned body (REFERENCE §10), so real answers come
from a stand-in for SageMaker Runtime on 127.0.0.1 that does what the service does: it takes the signed
InvokeEndpoint request and hands its body, content type, Accept and custom attributes to the endpoint's
container (here `magiccards serve`, started as the image starts it), returning the container's answer, or a
ModelError (HTTP 424) carrying the container's own 4xx."""
from __future__ import annotations

import http.client
import http.server
import json
import threading

from ..helpers import read_all, run_cli
from .test_server import Server

FORWARDED = ("Content-Type", "Accept", "X-Amzn-SageMaker-Custom-Attributes")


class RuntimeStandIn:
    """POST /endpoints/NAME/invocations → POST /invocations of the container at `port`."""

    def __init__(self, name: str, port: int):
        self.requests = []
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                stand_in.requests.append((self.path, {h: self.headers.get(h) for h in (*FORWARDED, "Authorization")}))
                if self.path != f"/endpoints/{name}/invocations":
                    endpoint = self.path.split("/")[2] if self.path.count("/") >= 2 else "?"
                    return self._answer(400, json.dumps({"message": f"Endpoint {endpoint} of account 123456789012 "
                                                                    "not found."}).encode(),
                                        "application/json", "ValidationException")
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                conn.request("POST", "/invocations", body, {h: self.headers[h] for h in FORWARDED if self.headers[h]})
                answer = conn.getresponse()
                data = answer.read()
                if answer.status >= 400:
                    error = {"message": f"Received client error ({answer.status}) from primary with message "
                                        f"\"{data.decode(errors='replace')}\".", "OriginalStatusCode": answer.status,
                             "OriginalMessage": data.decode(errors="replace")}
                    return self._answer(424, json.dumps(error).encode(), "application/json", "ModelError")
                self._answer(200, data, answer.getheader("Content-Type"))

            def _answer(self, status, data, content_type, error_type=None):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                if error_type:
                    self.send_header("x-amzn-ErrorType", error_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_endpoint_answers_are_drawn_as_a_urls_are(aws, monkeypatch, detector, packed_scenes, tmp_path):
    photos = []
    for k, (_, jpeg) in enumerate(read_all(packed_scenes / "validation.rec")[:2]):
        photos.append(tmp_path / f"scene-{k}.jpg")
        photos[-1].write_bytes(jpeg)
    import numpy as np
    from PIL import Image

    large = tmp_path / "large.jpg"  # a photo the container refuses (413: over its 1 MB payload)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (1200, 1200, 3), dtype=np.uint8)).save(large, quality=95)
    assert large.stat().st_size > 1 << 20
    server = Server(detector, workers=1, SAGEMAKER_MAX_PAYLOAD_IN_MB=1)
    runtime = RuntimeStandIn("cards-live", server.port)
    try:
        direct = run_cli("invoke", f"http://127.0.0.1:{server.port}", *photos, "--out", tmp_path / "direct")
        assert direct.returncode == 0, direct.stderr
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", runtime.endpoint)
        done = run_cli("invoke", "endpoint:cards-live", photos[0], large, photos[1], "--out", tmp_path / "cloud",
                       "--score-threshold", "0.3")
        assert done.returncode == 0, done.stderr
        missing = run_cli("invoke", "endpoint:cards-gone", photos[0], "--out", tmp_path / "gone")
    finally:
        runtime.close()
        assert server.stop() == 0
    for photo in photos:  # the same answers and drawings as the URL's
        assert json.loads((tmp_path / "cloud" / f"{photo.stem}.json").read_text()) == \
            json.loads((tmp_path / "direct" / f"{photo.stem}.json").read_text())
        assert (tmp_path / "cloud" / f"{photo.stem}.jpg").stat().st_size > 1000
    skipped = [line for line in done.stdout.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 1 and "refused it" in skipped[0] and "413" in skipped[0], done.stdout  # the container's
    assert "2 answered, 1 skipped" in done.stdout
    path, headers = runtime.requests[0]
    assert path == "/endpoints/cards-live/invocations" and headers["Content-Type"] == "image/jpeg"
    assert headers["Accept"] == "application/json"
    assert headers["X-Amzn-SageMaker-Custom-Attributes"] == "names=true;score_threshold=0.3"
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 ")  # signed as SageMaker Runtime wants
    assert missing.returncode == 1 and "cards-gone" in missing.stderr and "not found" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_a_runtime_that_does_not_answer_as_sagemaker_and_bad_names_are_one_line(aws, packed_scenes, tmp_path):
    """moto_server answers InvokeEndpoint with HTTP 500 and no AWS error body (in process, moto answers a canned
    b'body': REFERENCE §10; neither is a real answer): one line saying so; a name no endpoint can have is refused
    before any call."""
    photo = tmp_path / "scene.jpg"
    photo.write_bytes(read_all(packed_scenes / "validation.rec")[0][1])
    done = run_cli("invoke", "endpoint:cards-any", photo, "--out", tmp_path / "out")
    assert done.returncode == 1 and "invoking endpoint cards-any" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    bad = run_cli("invoke", "endpoint:cards_live", photo, "--out", tmp_path / "out")
    assert bad.returncode == 1 and "is not an endpoint name" in bad.stderr
