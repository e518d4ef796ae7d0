"""The inference server: gunicorn worker processes around serve/app.py, configured as SageMaker expects.

    SAGEMAKER_BIND_TO_PORT          port (default 8080)
    SAGEMAKER_MODEL_SERVER_WORKERS  worker processes (default: one per core given to the container)
    SAGEMAKER_MODEL_SERVER_TIMEOUT  seconds a request may take (default 60)
    SAGEMAKER_MAX_PAYLOAD_IN_MB     request body limit (default 6, a real-time endpoint's limit)
    MAGICCARDS_BACKEND              auto | mxnet | onnxruntime | openvino
    MAGICCARDS_REQUEST_READ_TIMEOUT seconds a client has to send a whole request (default 20; then 408)

The model directory is checked (and a model.tar.gz unpacked, safely, into a temporary folder removed
when the server exits, however it exits) once, before any worker starts: a missing or corrupt model, or
a port already in use, ends the server with one clear line instead of a server answering 500s.
Each worker loads the predictor before it accepts a connection, so /ping answers 200 only with a
model loaded. SIGTERM stops gracefully: in-flight requests finish, then the workers exit. Each server
has its own gunicorn control socket in that temporary folder (`gunicornc -s PATH`), never a shared one.
"""
from __future__ import annotations

import dataclasses
import errno
import math
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

from magiccards.errors import UserError
from magiccards.model_dir import ModelDir, TwoStageDir, open_model

from .runtime import threads_given

SAGEMAKER_MODEL_DIR = "/opt/ml/model"
THREADS = 16  # connections a worker serves at once: /ping stays answered beside inference and slow clients
BOOT_ERROR = 3  # gunicorn's exit status for a worker that cannot start: the arbiter stops


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    port: int = 8080
    workers: int = 1
    timeout: float = 60.0
    max_payload_mb: float = 6.0
    backend: str | None = None
    host: str = "0.0.0.0"
    read_timeout: float = 20.0

    @property
    def threads_per_worker(self) -> int:
        return max(1, threads_given() // self.workers)

    @classmethod
    def from_environment(cls, **overrides) -> ServerConfig:
        """The SageMaker variables above; `overrides` (not None) win."""
        env = os.environ
        try:
            config = cls(port=int(env.get("SAGEMAKER_BIND_TO_PORT", 8080)),
                         workers=int(env.get("SAGEMAKER_MODEL_SERVER_WORKERS") or threads_given()),
                         timeout=float(env.get("SAGEMAKER_MODEL_SERVER_TIMEOUT", 60)),
                         max_payload_mb=float(env.get("SAGEMAKER_MAX_PAYLOAD_IN_MB", 6)),
                         backend=env.get("MAGICCARDS_BACKEND") or None,
                         read_timeout=float(env.get("MAGICCARDS_REQUEST_READ_TIMEOUT", 20)))
        except ValueError as e:
            raise UserError(f"a SAGEMAKER_* server setting is not a number ({e})") from None
        config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
        for name in ("timeout", "max_payload_mb", "read_timeout"):
            value = getattr(config, name)
            if not math.isfinite(value) or value <= 0:
                raise UserError(f"server setting {name} must be a finite number above 0 (got {value}): check "
                                "SAGEMAKER_MODEL_SERVER_TIMEOUT, SAGEMAKER_MAX_PAYLOAD_IN_MB, "
                                "MAGICCARDS_REQUEST_READ_TIMEOUT and the options")
        if config.workers < 1 or not 0 < config.port < 65536 or config.max_payload_mb > 1024:
            raise UserError(f"server settings out of range (workers at least 1, port 1-65535, payload at most "
                            f"1024 MB): workers {config.workers}, port {config.port}, "
                            f"payload {config.max_payload_mb:g} MB")
        return config


def check_model(path: Path, workdir: Path) -> ModelDir | TwoStageDir:
    """The model to serve, one network or two stages (a model.tar.gz in it is unpacked safely into `workdir`)."""
    return open_model(Path(path), workdir)


def check_port(host: str, port: int) -> None:
    """Refuse a port another program already listens on, in one line, before any worker starts."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                raise UserError(f"port {port} is {'in use' if e.errno == errno.EADDRINUSE else 'not allowed'} "
                                f"({e.strerror}): stop what listens there or pass --port "
                                "(SAGEMAKER_BIND_TO_PORT)") from None
            raise UserError(f"cannot listen on {host}:{port}: {e.strerror}") from None


def _application(model: ModelDir | TwoStageDir, config: ServerConfig, control_socket: Path):
    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):
        def load_config(self):
            from .worker import with_read_timeout

            settings = {"bind": f"{config.host}:{config.port}", "workers": config.workers,
                        "worker_class": with_read_timeout(config.read_timeout), "threads": THREADS,
                        "control_socket": str(control_socket),
                        "timeout": int(config.timeout) + 30,  # our own timeout answers first (504)
                        "graceful_timeout": int(config.timeout) + 5, "keepalive": 75,
                        "errorlog": "-", "loglevel": "info", "accesslog": None,
                        "proc_name": "magiccards-serve"}
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self):
            from .app import InferenceApp
            from .loader import load
            try:
                predictor = load(model, backend=config.backend, threads=config.threads_per_worker)
            except UserError as e:
                print(f"error: {e}", file=sys.stderr, flush=True)
                sys.exit(BOOT_ERROR)
            print(f"worker {os.getpid()}: {predictor.describe()}", flush=True)
            return InferenceApp(predictor, max_payload_bytes=int(config.max_payload_mb * (1 << 20)),
                                timeout_seconds=config.timeout, max_concurrent_transforms=config.workers)

    return Server()


def serve(model_path: Path, config: ServerConfig, log=print) -> int:
    """Run the server until it is stopped; returns its exit status. Its temporary folder (an unpacked
    model.tar.gz, the control socket) is removed on every way out."""
    scratch, server_pid = Path(tempfile.mkdtemp(prefix="magiccards-serve-")), os.getpid()
    try:
        model = check_model(model_path, scratch / "model")
        if config.backend:
            select_backend_name_check(model, config.backend)
        check_port(config.host, config.port)
        log(f"serving {model.task} model {model.path} on port {config.port}: {config.workers} worker(s), "
            f"{config.threads_per_worker} thread(s) each, timeout {config.timeout:g} s, "
            f"payload limit {config.max_payload_mb:g} MB, request read within {config.read_timeout:g} s")
        server = _application(model, config, scratch / "gunicorn.ctl")
        try:
            server.run()
        except SystemExit as e:
            return int(e.code or 0)
        return 0
    finally:
        if os.getpid() == server_pid:  # not a worker gunicorn forked leaving: the server's own exit
            shutil.rmtree(scratch, ignore_errors=True)


def select_backend_name_check(model: ModelDir | TwoStageDir, name: str) -> None:
    """Fail before the workers start when the asked-for backend cannot run `model` (a bad name, no export;
    for a two-stage model, either stage's)."""
    from .backends import resolve

    for network in model.stages:
        resolve(network, name)


def main() -> int:
    """`docker run IMAGE serve`: serve /opt/ml/model with the SageMaker settings of the environment."""
    try:
        return serve(Path(os.environ.get("SM_MODEL_DIR", SAGEMAKER_MODEL_DIR)), ServerConfig.from_environment())
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return e.exit_code
