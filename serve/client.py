"""A client of a running endpoint: send images, get the answers, draw them (`magiccards invoke`).

Two transports, one contract (the same content types, Accept and custom attributes): a URL
(`magiccards serve`, `docker run IMAGE serve`, any server of the SageMaker contract) gets a POST to
/invocations; `endpoint:NAME` goes through SageMaker Runtime's InvokeEndpoint (SigV4, the standard AWS
configuration), which hands the same request to the endpoint's container."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

from magiccards.errors import UserError
from magiccards.files import atomic_path, write_text_atomic, writing

from .images import ImageError, decode_image
from .predict_files import annotate, output_names
from .predictor import Classification, Detection

CONTENT_TYPES = {".png": "image/png"}


class RefusedImage(UserError):
    """The endpoint refused this request (a 4xx): the next image may still be answered."""


ENDPOINT_PREFIX = "endpoint:"


def _attributes(score_threshold: float) -> str:
    return f"names=true;score_threshold={score_threshold}"


def invoke(url: str, data: bytes, content_type: str = "image/jpeg", timeout: float = 60,
           score_threshold: float = 0.0) -> dict | list:
    """POST `data` to `url`/invocations asking for class names too (and detections scoring at least
    `score_threshold`); the decoded JSON answer."""
    request = urllib.request.Request(url.rstrip("/") + "/invocations", data=data, method="POST",
                                     headers={"Content-Type": content_type, "Accept": "application/json",
                                              "X-Amzn-SageMaker-Custom-Attributes": _attributes(score_threshold)})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as e:
        error = RefusedImage if 400 <= e.code < 500 else UserError
        raise error(f"{url} answered {e.code}: {e.read().decode(errors='replace')[:300]}") from None
    except (urllib.error.URLError, OSError) as e:
        raise UserError(f"cannot reach {url}: {getattr(e, 'reason', e)}") from None


class SageMakerEndpoint:
    """`endpoint:NAME`: InvokeEndpoint of SageMaker Runtime, with the request `invoke` sends to a URL."""

    def __init__(self, name: str, session):
        from botocore.config import Config

        self.name = name
        # an invocation has 60 s at SageMaker; standard retries resend on throttling and 5xx, never on the
        # container's own answer (a ModelError)
        self._runtime = session.client("sagemaker-runtime", config=Config(read_timeout=70, retries={"max_attempts": 3,
                                                                                                   "mode": "standard"}))

    def __call__(self, data: bytes, content_type: str, score_threshold: float) -> dict | list:
        from botocore.exceptions import BotoCoreError, ClientError

        from magiccards.aws import aws_error

        try:
            answer = self._runtime.invoke_endpoint(EndpointName=self.name, Body=data, ContentType=content_type,
                                                   Accept="application/json",
                                                   CustomAttributes=_attributes(score_threshold))
            body = answer["Body"].read()
        except ClientError as e:
            error = e.response.get("Error", {})
            if error.get("Code") == "ModelError" and 400 <= int(e.response.get("OriginalStatusCode", 500) or 500) < 500:
                raise RefusedImage(f"endpoint {self.name} refused it: {error.get('Message', '')[:300]}") from None
            raise aws_error(f"invoking endpoint {self.name}", e) from None
        except BotoCoreError as e:
            raise aws_error(f"invoking endpoint {self.name}", e) from None
        try:
            return json.loads(body)
        except ValueError:
            raise UserError(f"endpoint {self.name} answered {answer.get('ContentType', 'something')} that is not the "
                            f"JSON of the serving contract: {body[:80]!r}") from None


def transport(target: str, session_factory=None):
    """The sender of `invoke`'s TARGET: `endpoint:NAME` (SageMaker Runtime, a session from `session_factory`) or
    an http(s) URL; called as send(data, content_type, score_threshold) -> the decoded answer."""
    if target.startswith(ENDPOINT_PREFIX):
        name = target[len(ENDPOINT_PREFIX):]
        from magiccards.aws import SAGEMAKER_NAME

        if not SAGEMAKER_NAME.match(name):
            raise UserError(f"{target}: {name!r} is not an endpoint name (`magiccards endpoints` lists them)")
        return SageMakerEndpoint(name, session_factory())
    check_url(target)
    return lambda data, content_type, score_threshold: invoke(target, data, content_type,
                                                              score_threshold=score_threshold)


def wait_until_ready(url: str, seconds: float) -> None:
    """Wait until `url`/ping answers 200 (a server that is starting); UserError after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise UserError(f"{url}/ping did not answer within {seconds:g} s")
        time.sleep(0.25)


def as_result(answer, classes: list[str] | None = None):
    """A predictor result from an endpoint's answer (for drawing)."""
    if isinstance(answer, dict) and "labels" in answer:
        return Classification(list(answer["prediction"]), list(answer["labels"]))
    names = answer.get("names") or [str(int(row[0])) for row in answer["prediction"]]
    return [Detection(int(row[0]), float(row[1]), tuple(row[2:6]), name) for row, name in zip(answer["prediction"], names)]


def check_url(url: str) -> None:
    """Refuse, in one line, a URL this client cannot send to (another scheme, no host)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UserError(f"{url}: the scheme {parts.scheme + '://' if parts.scheme else '(none)'} is not supported; "
                        "give http://HOST:PORT or https://HOST:PORT of an endpoint")
    if not parts.hostname:
        raise UserError(f"{url}: no host; give http://HOST:PORT")


def invoke_files(send, images: list[Path], out: Path, score_threshold: float = 0.3, log=print) -> int:
    """Send each image through `send` (`transport`, or a URL); write `<name>.json` (the answer) and `<name>.jpg`
    (drawn). An image that cannot be read or that the endpoint refuses is reported and skipped; the others go on.
    Returns how many were answered; UserError when none was, or when the endpoint cannot be reached at all."""
    if isinstance(send, str):
        send = transport(send)
    with writing(f"the output folder {out}"):
        out.mkdir(parents=True, exist_ok=True)
    stems, notes = output_names(images)
    for note in notes:
        log(note)
    answered, failed = 0, []
    for path in images:
        try:
            data = Path(path).read_bytes()
            pixels = decode_image(data)
            answer = send(data, CONTENT_TYPES.get(Path(path).suffix.lower(), "image/jpeg"), score_threshold)
        except (OSError, ImageError, RefusedImage) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            log(f"skipped {path}: {reason}")
            failed.append(path)
            continue
        result = as_result(answer)
        task = "classification" if isinstance(result, Classification) else "detection"
        stem = stems[path]
        with writing(f"the output folder {out}"):
            write_text_atomic(out / f"{stem}.json", json.dumps(answer, indent=1))
            with atomic_path(out / f"{stem}.jpg") as tmp:
                annotate(np.asarray(pixels), result, task).save(tmp, "JPEG", quality=90)
        answered += 1
        found = len(result) if task == "detection" else result.top(1)[0][0]
        log(f"{path}: {found if task == 'classification' else f'{found} box(es)'} -> {out / (stem + '.jpg')}")
    if failed and not answered:
        raise UserError(f"none of the {len(images)} image(s) was answered (see above)")
    if failed:
        log(f"{answered} answered, {len(failed)} skipped")
    return answered
