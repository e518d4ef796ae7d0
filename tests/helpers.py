"""Small helpers shared by tests: running the CLI and reading records back."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mxnet as mx
import numpy as np


def run_cli(*args: str | Path) -> subprocess.CompletedProcess:
    """Run `magiccards ARGS` in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "magiccards.cli", *map(str, args)], capture_output=True, text=True)


def run_in_child(module: str, function: str, *args, timeout: float = 600) -> None:
    """Run `function(*args)` of the test module named `module` (pass `__name__`) in a fresh interpreter; fail with
    its output when it fails. For tests that drive MXNet from several threads at once: a native crash there ends one
    test, with its stack, instead of the whole session (a corrupted heap may crash much later, in another test)."""
    import json
    code = ("import importlib, json, sys\n"
            "sys.path.insert(0, sys.argv[1])\n"
            "getattr(importlib.import_module(sys.argv[2]), sys.argv[3])(*json.loads(sys.argv[4]))\n")
    done = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code, str(Path(__file__).parents[1]), module,
                           function, json.dumps([str(a) if isinstance(a, Path) else a for a in args])],
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{function} failed in its own process (exit {done.returncode}):\n" \
                                 f"{done.stdout[-2000:]}\n{done.stderr[-6000:]}"


def read_all(rec: Path) -> list[tuple[mx.recordio.IRHeader, bytes]]:
    reader = mx.recordio.MXIndexedRecordIO(str(Path(rec).with_suffix(".idx")), str(rec), "r")
    try:
        return [mx.recordio.unpack(reader.read_idx(k)) for k in sorted(reader.keys)]
    finally:
        reader.close()


def lst_rows(lst: Path) -> list[list[str]]:
    return [line.rstrip("\n").split("\t") for line in Path(lst).read_text().splitlines()]


def labels_of(header) -> np.ndarray:
    return np.asarray(header.label, dtype=np.float32).ravel()


# a quick classification job on the `packed_cards` fixture
QUICK_HP = {"network": "resnet18_v1b", "image_shape": "3,32,32", "mini_batch_size": "8", "optimizer": "sgd",
            "learning_rate": "0.02", "num_workers": "0"}


def final_weights(job: Path, epochs: int) -> dict:
    """The parameters of a job's checkpoint after its last epoch."""
    last = sorted((Path(job) / "checkpoints").glob(f"epoch-{epochs:04d}-batch-*"))[-1]
    return mx.nd.load(str(last / "model.params"))


def without_credentials(monkeypatch, tmp_path: Path) -> None:
    """No AWS credentials anywhere in the standard chain (environment, shared files)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))


class JsonServiceStandIn:
    """A local HTTP server answering AWS JSON-protocol calls (SageMaker, CloudWatch Logs) as the service does,
    for the answers moto_server cannot give (a job in progress, an expired token). `answers` maps the
    operation (X-Amz-Target's tail, e.g. 'DescribeTrainingJob', or '*') to (status, body dict or a callable of the
    request body giving a body or (status, body)); every request is kept in
    `calls` as (operation, body). Point a client at it with AWS_ENDPOINT_URL_<SERVICE>."""

    def __init__(self, answers: dict):
        import http.server
        import json
        import threading

        self.answers, self.calls = answers, []
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                operation = self.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
                stand_in.calls.append((operation, body))
                status, answer = stand_in.answers.get(operation, stand_in.answers.get(
                    "*", (400, {"__type": "UnknownOperationException", "message": operation})))
                answer = answer(body) if callable(answer) else answer
                if isinstance(answer, tuple):  # a callable's own (status, body)
                    status, answer = answer
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
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


# `python -c CAPPED.format(bytes) ARGS...`: the CLI with files capped at that size, a full disk as a write sees it
CAPPED = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
          "resource.setrlimit(resource.RLIMIT_FSIZE, ({0}, {0})); from magiccards.cli import main; "
          "sys.exit(main(sys.argv[1:]))")
