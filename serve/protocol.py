"""Requests and responses of /invocations, as the built-in image algorithms define them.

Input (`Content-Type`): `image/jpeg`, `image/png`, `application/x-image` (one image);
`application/json` (extension: a list of base64 images, or {"instances": [...]}: a batch in one request);
`application/x-recordio` (batch transform with SplitType=RecordIO: one or several whole RecordIO
records, each an image or an image record as `pack` writes them).

Output (`Accept`): classification answers `application/json` with the list of class probabilities
(one image) and `application/jsonlines` with `{"prediction": [...]}` per image, plus `labels` and
`predicted_label` with `verbose=true`. Detection answers `{"prediction": [[class, score, xmin, ymin,
xmax, ymax], ...]}` with corners normalised to the original image. Extensions: `X-Amzn-SageMaker-
Custom-Attributes: score_threshold=0.5;top_k=10;names=true` (names adds the class names).
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import json

from magiccards.data.recordio_reader import read_stream, unpack_image_record

from magiccards.errors import DataError

from .predictor import Classification

IMAGE_TYPES = ("image/jpeg", "image/png", "application/x-image")
JSON, JSONLINES, RECORDIO = "application/json", "application/jsonlines", "application/x-recordio"
CONTENT_TYPES = IMAGE_TYPES + (JSON, RECORDIO)
ACCEPT_TYPES = (JSON, JSONLINES)


class RequestError(Exception):
    """A request the server refuses: the HTTP status and a message for the JSON error body."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclasses.dataclass(frozen=True)
class Options:
    score_threshold: float = 0.0
    top_k: int | None = None
    names: bool = False
    verbose: bool = False


def _media(header: str | None) -> tuple[str, dict[str, str]]:
    """('type/subtype', {param: value}) of a Content-Type or one Accept entry."""
    parts = [p.strip() for p in (header or "").split(";")]
    params = {}
    for p in parts[1:]:
        if "=" in p:
            key, value = p.split("=", 1)
            params[key.strip().lower()] = value.strip().strip('"').lower()
    return parts[0].lower(), params


def accepted(header: str | None) -> tuple[str, bool]:
    """(response type, verbose) for an Accept header; RequestError 406 when none is served."""
    if not header or not header.strip():
        return JSON, False
    for entry in header.split(","):
        media, params = _media(entry)
        if media in ("*/*", "application/*", ""):
            return JSON, params.get("verbose") == "true"
        if media in ACCEPT_TYPES:
            return media, params.get("verbose") == "true"
    raise RequestError(406, f"Accept {header!r} is not served; use one of {', '.join(ACCEPT_TYPES)}")


def options(custom_attributes: str | None, verbose: bool) -> Options:
    """The options of the X-Amzn-SageMaker-Custom-Attributes header (`key=value` pairs, `;` or `,`)."""
    values = {}
    for pair in (custom_attributes or "").replace(",", ";").split(";"):
        if "=" in pair:
            key, value = pair.split("=", 1)
            values[key.strip().lower()] = value.strip()
    try:
        threshold = float(values.get("score_threshold", 0.0))
        top_k = int(values["top_k"]) if "top_k" in values else None
    except ValueError:
        shown = custom_attributes if len(custom_attributes) <= 120 else custom_attributes[:120] + "..."
        raise RequestError(400, "custom attributes: score_threshold must be a number and top_k an integer "
                                f"(got {shown!r})") from None
    if not 0.0 <= threshold <= 1.0 or (top_k is not None and top_k < 1):
        raise RequestError(400, "custom attributes: score_threshold must lie in [0, 1] and top_k be at least 1")
    return Options(threshold, top_k, values.get("names", "false").lower() == "true", verbose)


def images_of(content_type: str | None, body: bytes) -> list[bytes]:
    """The encoded images of a request body; RequestError 415/400 when the body does not fit its type."""
    media, _ = _media(content_type)
    if media not in CONTENT_TYPES:
        raise RequestError(415, f"Content-Type {content_type!r} is not supported; use one of {', '.join(CONTENT_TYPES)}")
    if not body:
        raise RequestError(400, "the request body is empty; send an image")
    if media in IMAGE_TYPES:
        return [body]
    if media == RECORDIO:
        return _recordio_images(body)
    return _json_images(body)


def _json_images(body: bytes) -> list[bytes]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise RequestError(400, "the body is not valid JSON; send a list of base64-encoded images") from None
    except RecursionError:  # [[[[...]]]] nested deeper than the parser goes
        raise RequestError(400, "the JSON body is nested too deeply; send a list of base64-encoded images") from None
    items = doc.get("instances") if isinstance(doc, dict) else doc
    if isinstance(items, str):
        items = [items]
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise RequestError(400, 'application/json takes a list of base64-encoded images (or {"instances": [...]})')
    try:
        return [base64.b64decode(item, validate=True) for item in items]
    except (binascii.Error, ValueError):
        raise RequestError(400, "an item of the JSON list is not valid base64") from None


def _recordio_images(body: bytes) -> list[bytes]:
    try:
        records = list(read_stream(io.BytesIO(body), "the request body"))
    except DataError as e:
        raise RequestError(400, f"application/x-recordio: {e}") from None
    if not records:
        raise RequestError(400, "application/x-recordio: the body holds no record")
    images = []
    for record in records:
        if record[:2] == b"\xff\xd8" or record[:8] == b"\x89PNG\r\n\x1a\n":
            images.append(record)  # a bare image in a record
        else:
            try:
                images.append(unpack_image_record(record)[1])  # an image record as pack / im2rec write it
            except DataError as e:
                raise RequestError(400, f"application/x-recordio: {e}") from None
    return images


def encode(results: list, task: str, accept: str, opts: Options, classes: list[str], batch: bool) -> bytes:
    """The response body for `results` (one per image, in order)."""
    answers = [_classification(r, opts, classes, accept) if task == "classification" else _detection(r, opts)
               for r in results]
    if accept == JSONLINES:
        return "".join(json.dumps(a) + "\n" for a in answers).encode()
    return json.dumps(answers if batch else answers[0]).encode()


def _classification(result: Classification, opts: Options, classes: list[str], accept: str):
    if accept == JSON and not (opts.verbose or opts.names):
        return result.probabilities  # the built-in answer: the list of class probabilities
    answer = {"prediction": result.probabilities}
    if opts.verbose or opts.names:
        answer.update(labels=classes, predicted_label=classes[result.predicted_label])
    return answer


def _detection(found: list, opts: Options):
    answer = {"prediction": [d.as_row() for d in found]}
    if opts.names or opts.verbose:  # the verbose answer names what it found, as a classifier's does
        answer["names"] = [d.name for d in found]
    return answer


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()
