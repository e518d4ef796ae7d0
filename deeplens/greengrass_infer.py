"""The inference loop of the Greengrass v2 component: a camera, a video or a folder in, results to IoT Core.

Runs on the device (the component's Run step) as `python infer.py --model model`, the component's
configuration in environment variables (MAGICCARDS_SOURCE, MAGICCARDS_TOPIC, MAGICCARDS_EDGE_BACKEND,
MAGICCARDS_INTERVAL, MAGICCARDS_SCORE_THRESHOLD: data, never shell text), or as
`python infer.py --model model --source 0 --topic T` (the options win over the variables),
with the model directory and this project's serve/ room unpacked beside it. Each frame goes through
serve/'s Predictor (the export's runtime: ONNX Runtime or OpenVINO) and its result is published as one
JSON message over Greengrass IPC (`PublishToIoTCore`), or printed with `--publish stdout` to try it off
the device. A source of digits is a camera index; a folder is read in name order, then watched for new
images (a drop folder) unless `--once`.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

IPC_SOCKET = "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"


class StdoutPublisher:
    """Prints each message as a line of JSON (for a run off the device)."""

    def publish(self, topic: str, message: dict) -> None:
        print(json.dumps({"topic": topic, **message}), flush=True)


class IpcPublisher:
    """Publishes to AWS IoT Core through the Greengrass nucleus (awsiotsdk's IPC client, QoS 1)."""

    def __init__(self):
        if not os.environ.get(IPC_SOCKET):
            raise RuntimeError(f"not running as a Greengrass component (${IPC_SOCKET} is not set); "
                               "pass --publish stdout to try the model here")
        from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

        self.client = GreengrassCoreIPCClientV2()

    def publish(self, topic: str, message: dict) -> None:
        self.client.publish_to_iot_core(topic_name=topic, qos="1", payload=json.dumps(message).encode())


def _images_in(folder: Path, seen: set[Path]) -> list[Path]:
    from magiccards.serve.predict_files import IMAGE_SUFFIXES

    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p not in seen)


def frames(source: str, interval: float, once: bool, limit: int | None) -> Iterator[tuple[str, object]]:
    """(name, RGB frame) of a folder's images (then its new ones), a video file or a camera."""
    from magiccards.serve.images import ImageError, decode_image
    from magiccards.serve.predict_files import video_frames

    path = Path(source)
    taken = 0
    if path.is_dir():
        seen: set[Path] = set()
        while limit is None or taken < limit:
            new = _images_in(path, seen)
            for image in new[: None if limit is None else limit - taken]:
                seen.add(image)
                try:
                    yield image.name, decode_image(image.read_bytes())
                except (ImageError, OSError) as e:
                    print(f"skipped {image}: {e}", file=sys.stderr, flush=True)
                    continue
                taken += 1
            if once:
                return
            time.sleep(max(interval, 0.2))
        return
    if not source.isdigit() and not path.is_file():
        raise RuntimeError(f"source {source} is neither a camera index, a video file nor a folder")
    every = 1
    if not source.isdigit():
        import cv2

        capture = cv2.VideoCapture(source)
        fps = capture.get(cv2.CAP_PROP_FPS) or 0
        capture.release()
        every = max(1, round(fps * interval)) if fps > 0 else 1
    last = 0.0
    for n, frame in video_frames(source, every, limit):
        if source.isdigit():  # a camera: one frame per interval, the newest
            wait = last + interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            last = time.monotonic()
        yield f"frame-{n:06d}", frame


def message(result, task: str, name: str, backend: str) -> dict:
    """One published message: the built-in algorithm's fields, class names, and where it came from."""
    from magiccards.serve.predict_files import result_json

    return {"source": name, "task": task, "backend": backend,
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
            **result_json(result, task)}


def _number(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):  # NaN fails too
        raise ValueError(text)
    return value


def arguments(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the model directory (with its exports/)")
    parser.add_argument("--source", default=env.get("MAGICCARDS_SOURCE", "0"),
                        help="camera index, video file or folder of images ($MAGICCARDS_SOURCE)")
    parser.add_argument("--topic", default=env.get("MAGICCARDS_TOPIC"),
                        help="the IoT Core topic results are published to ($MAGICCARDS_TOPIC)")
    parser.add_argument("--backend", default=env.get("MAGICCARDS_EDGE_BACKEND", "auto"),
                        help="auto (fastest passed export), onnxruntime, openvino ($MAGICCARDS_EDGE_BACKEND)")
    parser.add_argument("--interval", type=_number, default=env.get("MAGICCARDS_INTERVAL", "1.0"),
                        help="seconds between predictions ($MAGICCARDS_INTERVAL)")
    parser.add_argument("--score-threshold", type=_number, default=env.get("MAGICCARDS_SCORE_THRESHOLD", "0.5"),
                        help="detections below are left out ($MAGICCARDS_SCORE_THRESHOLD)")
    parser.add_argument("--top-k", type=int, default=None, help="at most this many detections per frame")
    parser.add_argument("--publish", choices=("ipc", "stdout"), default="ipc")
    parser.add_argument("--once", action="store_true", help="a folder: stop after the images it holds")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many predictions")
    args = parser.parse_args(argv)
    if not args.topic:
        parser.error("the topic is missing: pass --topic or set MAGICCARDS_TOPIC")
    return args


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    try:
        publisher = IpcPublisher() if args.publish == "ipc" else StdoutPublisher()
    except (RuntimeError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    try:
        from magiccards.serve.loader import load

        predictor = load(Path(args.model), backend=args.backend)
    except Exception as e:  # noqa: BLE001 - the device must say why it cannot start, not crash-loop silently
        publisher.publish(args.topic, {"error": f"the model cannot be loaded: {e}", "model": args.model})
        print(f"error: the model cannot be loaded: {e}", file=sys.stderr, flush=True)
        return 1
    backend = f"{predictor.backend.name} {predictor.backend.precision}"
    print(f"serving {args.model} ({predictor.task}, {len(predictor.classes)} classes) on {backend}; "
          f"publishing to {args.topic}", flush=True)
    count = 0
    try:
        for name, frame in frames(args.source, args.interval, args.once, args.max_frames):
            result = predictor.predict([frame], score_threshold=args.score_threshold, top_k=args.top_k)[0]
            publisher.publish(args.topic, message(result, predictor.task, name, backend))
            count += 1
    except Exception as e:  # noqa: BLE001 - a camera that is gone: say so on the topic, then stop
        publisher.publish(args.topic, {"error": str(e), "model": args.model})
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        pass
    print(f"published {count} results", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
