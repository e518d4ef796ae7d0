"""The WSGI application of the SageMaker hosting contract: /ping, /invocations, /execution-parameters.

One application per worker process, around one loaded Predictor. Inference runs one request at a time
per worker (MXNet's engine is not to be entered from several Python threads at once) on a small pool,
so `/ping` is answered by another thread at once, never behind an inference. What a hostile or unlucky
request can cost is bounded at each step:

- reading: the whole request within the worker's read deadline (serve/worker.py), else 408;
- size: the body within SAGEMAKER_MAX_PAYLOAD_IN_MB, and the pixels of all its images together within
  MAGICCARDS_MAX_REQUEST_PIXELS, read from the image headers before anything is decoded, else 413;
- time: images are decoded and run a chunk at a time, the timeout checked before each chunk, so a request
  that outlives SAGEMAKER_MODEL_SERVER_TIMEOUT gets its 504 and stops using the worker at the end of the
  chunk in hand: the next request is served at once, not behind the rest of an abandoned batch;
- memory: one chunk's decoded images at a time (at most CHUNK_PIXELS, or one image).
"""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from . import protocol
from .images import MAX_REQUEST_PIXELS, ImageError, decode_image, image_size
from .predictor import MAX_BATCH, Predictor
from .worker import ReadTimeout

CHUNK_PIXELS = 16_000_000  # decoded pixels held at once by one request (a larger image is a chunk alone)
READ_BLOCK = 1 << 16

STATUS = {200: "200 OK", 400: "400 Bad Request", 404: "404 Not Found", 405: "405 Method Not Allowed",
          406: "406 Not Acceptable", 408: "408 Request Timeout", 413: "413 Payload Too Large", 415: "415 Unsupported Media Type",
          500: "500 Internal Server Error", 504: "504 Gateway Timeout"}


class Expired(Exception):
    """The request's time ran out between two chunks: the rest of its work is dropped."""


class InferenceApp:
    """A WSGI callable serving `predictor`."""

    def __init__(self, predictor: Predictor, *, max_payload_bytes: int, timeout_seconds: float,
                 max_concurrent_transforms: int = 1, max_request_pixels: int = MAX_REQUEST_PIXELS, log=print):
        self.predictor, self.max_payload, self.timeout = predictor, max_payload_bytes, timeout_seconds
        self.max_concurrent_transforms, self.log = max_concurrent_transforms, log
        self.max_request_pixels = max_request_pixels
        self._inference = threading.Lock()
        # one thread runs every inference (MXNet's frontend wants one sticky thread; the lock orders the requests)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="inference")

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
        deadline = time.monotonic() + self.timeout
        accept, verbose = protocol.accepted(environ.get("HTTP_ACCEPT"))
        opts = protocol.options(environ.get("HTTP_X_AMZN_SAGEMAKER_CUSTOM_ATTRIBUTES"), verbose)
        content_type = environ.get("CONTENT_TYPE")
        if content_type and content_type.split(";")[0].strip().lower() not in protocol.CONTENT_TYPES:
            protocol.images_of(content_type, b"")  # 415 before the body is read
        encoded = protocol.images_of(content_type, self._body(environ))
        sizes = self._sizes(encoded)
        future = self._pool.submit(self._predict, encoded, sizes, opts, deadline)
        try:
            results = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except (FutureTimeout, Expired):
            raise protocol.RequestError(504, f"the request took longer than {self.timeout:g} s "
                                             "(SAGEMAKER_MODEL_SERVER_TIMEOUT)") from None
        batch = len(encoded) > 1 or (content_type or "").startswith((protocol.JSON, protocol.RECORDIO))
        body = protocol.encode(results, self.predictor.task, accept, opts, self.predictor.classes, batch)
        return body, accept

    def _sizes(self, encoded: list[bytes]) -> list[int]:
        """The pixels of each image, from the headers; 413 when the request holds more than allowed."""
        try:
            sizes = [w * h for w, h in (image_size(data) for data in encoded)]
        except ImageError as e:
            raise protocol.RequestError(413 if e.too_large else 400, str(e)) from None
        if sum(sizes) > self.max_request_pixels:
            raise protocol.RequestError(413, f"the request's {len(sizes)} image(s) hold {sum(sizes):,} pixels, more "
                                             f"than the {self.max_request_pixels:,} allowed in one request "
                                             "(MAGICCARDS_MAX_REQUEST_PIXELS); send fewer or smaller images")
        return sizes

    def _predict(self, encoded: list[bytes], sizes: list[int], opts: protocol.Options, deadline: float):
        """Decode and run the images a chunk at a time, under the lock, checking the deadline before each."""
        results = []
        with self._inference:
            for chunk in _chunks(sizes):
                if time.monotonic() > deadline:
                    raise Expired()
                try:
                    images = [decode_image(encoded[i]) for i in chunk]
                except ImageError as e:
                    raise protocol.RequestError(413 if e.too_large else 400, str(e)) from None
                results += self.predictor.predict(images, score_threshold=opts.score_threshold, top_k=opts.top_k)
        return results

    def _body(self, environ) -> bytes:
        """The request body, read within the connection's read deadline (408 past it)."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise protocol.RequestError(400, "Content-Length is not a number") from None
        limit = self.max_payload
        if length > limit:
            raise protocol.RequestError(413, f"the body is {length:,} bytes, more than the {limit:,} allowed "
                                             "(SAGEMAKER_MAX_PAYLOAD_IN_MB)")
        stream, sock = environ["wsgi.input"], environ.get("gunicorn.socket")
        wanted = length or limit + 1
        parts, got = [], 0
        try:
            while got < wanted:
                block = stream.read(min(READ_BLOCK, wanted - got))
                if not block:
                    break
                parts.append(block)
                got += len(block)
        except ReadTimeout as e:
            raise protocol.RequestError(408, f"{e.strerror}: send the whole request at once") from None
        if hasattr(sock, "clear"):
            sock.clear()  # the body is in: the read deadline does not run on through inference
        if got > limit:
            raise protocol.RequestError(413, f"the body is more than the {limit:,} bytes allowed "
                                             "(SAGEMAKER_MAX_PAYLOAD_IN_MB)")
        if length and got < length:
            raise protocol.RequestError(400, f"the body ended after {got:,} of its {length:,} bytes")
        return b"".join(parts)

    @staticmethod
    def _reply(start_response, status: int, body: bytes, content_type: str):
        start_response(STATUS[status], [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]


def _chunks(sizes: list[int]) -> list[list[int]]:
    """Indices of the images in runs of at most MAX_BATCH images and CHUNK_PIXELS pixels (or one image)."""
    chunks, current, pixels = [], [], 0
    for i, size in enumerate(sizes):
        if current and (len(current) == MAX_BATCH or pixels + size > CHUNK_PIXELS):
            chunks.append(current)
            current, pixels = [], 0
        current.append(i)
        pixels += size
    return chunks + ([current] if current else [])
