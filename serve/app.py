"""The WSGI application of the SageMaker hosting contract: /ping, /invocations, /execution-parameters.

One application per worker process, around one loaded Predictor. Inference runs one request at a time
per worker (MXNet's engine is not to be entered from several Python threads at once) on a small pool,
so `/ping` is answered by another thread at once, never behind an inference, and a request that
outlives the timeout gets a 504 instead of holding its client.
"""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from . import protocol
from .images import ImageError, decode_image
from .predictor import Predictor

STATUS = {200: "200 OK", 400: "400 Bad Request", 404: "404 Not Found", 405: "405 Method Not Allowed",
          406: "406 Not Acceptable", 413: "413 Payload Too Large", 415: "415 Unsupported Media Type",
          500: "500 Internal Server Error", 504: "504 Gateway Timeout"}


class InferenceApp:
    """A WSGI callable serving `predictor`."""

    def __init__(self, predictor: Predictor, *, max_payload_bytes: int, timeout_seconds: float,
                 max_concurrent_transforms: int = 1, log=print):
        self.predictor, self.max_payload, self.timeout = predictor, max_payload_bytes, timeout_seconds
        self.max_concurrent_transforms, self.log = max_concurrent_transforms, log
        self._inference = threading.Lock()
        self._pool = ThreadPoolExecutor(4, thread_name_prefix="inference")

    def __call__(self, environ, start_response):
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        try:
            if path == "/ping":
                return self._reply(start_response, 200, b"", "application/json")
            if path == "/execution-parameters":
                return self._reply(start_response, 200, json.dumps(self.execution_parameters()).encode(),
                                   protocol.JSON)
            if path != "/invocations":
                raise protocol.RequestError(404, f"no such path {path!r}; the server answers /ping and /invocations")
            if method != "POST":
                raise protocol.RequestError(405, "/invocations takes POST")
            body, content_type = self._invoke(environ)
            return self._reply(start_response, 200, body, content_type)
        except protocol.RequestError as e:
            return self._reply(start_response, e.status, protocol.error_body(e.message), protocol.JSON)
        except Exception as e:  # noqa: BLE001 - one bad request must never take the worker down
            self.log(f"error: /invocations failed: {type(e).__name__}: {e}")
            return self._reply(start_response, 500, protocol.error_body(f"inference failed: {type(e).__name__}"),
                               protocol.JSON)

    def execution_parameters(self) -> dict:
        """What batch transform asks before it starts (GET /execution-parameters)."""
        return {"MaxConcurrentTransforms": self.max_concurrent_transforms, "BatchStrategy": "MULTI_RECORD",
                "MaxPayloadInMB": max(1, self.max_payload // (1 << 20))}

    def _invoke(self, environ) -> tuple[bytes, str]:
        started = time.monotonic()
        accept, verbose = protocol.accepted(environ.get("HTTP_ACCEPT"))
        opts = protocol.options(environ.get("HTTP_X_AMZN_SAGEMAKER_CUSTOM_ATTRIBUTES"), verbose)
        content_type = environ.get("CONTENT_TYPE")
        if content_type and content_type.split(";")[0].strip().lower() not in protocol.CONTENT_TYPES:
            protocol.images_of(content_type, b"")  # 415 before the body is read
        encoded = protocol.images_of(content_type, self._body(environ))
        try:
            images = [decode_image(data) for data in encoded]
        except ImageError as e:
            raise protocol.RequestError(413 if e.too_large else 400, str(e)) from None
        future = self._pool.submit(self._predict, images, opts)
        try:
            results = future.result(timeout=max(0.0, self.timeout - (time.monotonic() - started)))
        except FutureTimeout:
            raise protocol.RequestError(504, f"the request took longer than {self.timeout:g} s "
                                             "(SAGEMAKER_MODEL_SERVER_TIMEOUT)") from None
        batch = len(encoded) > 1 or (content_type or "").startswith((protocol.JSON, protocol.RECORDIO))
        body = protocol.encode(results, self.predictor.task, accept, opts, self.predictor.classes, batch)
        return body, accept

    def _predict(self, images, opts: protocol.Options):
        with self._inference:
            return self.predictor.predict(images, score_threshold=opts.score_threshold, top_k=opts.top_k)

    def _body(self, environ) -> bytes:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise protocol.RequestError(400, "Content-Length is not a number") from None
        limit = self.max_payload
        if length > limit:
            raise protocol.RequestError(413, f"the body is {length:,} bytes, more than the {limit:,} allowed "
                                             "(SAGEMAKER_MAX_PAYLOAD_IN_MB)")
        stream = environ["wsgi.input"]
        body = stream.read(length) if length else stream.read(limit + 1)
        if len(body) > limit:
            raise protocol.RequestError(413, f"the body is more than the {limit:,} bytes allowed "
                                             "(SAGEMAKER_MAX_PAYLOAD_IN_MB)")
        return body

    @staticmethod
    def _reply(start_response, status: int, body: bytes, content_type: str):
        start_response(STATUS[status], [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]
