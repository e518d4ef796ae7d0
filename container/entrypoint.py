"""What the image runs: `docker run IMAGE train` or `docker run IMAGE serve`, as SageMaker calls it.

`train` is the sagemaker-training toolkit's own entry point (it runs SAGEMAKER_TRAINING_MODULE), with
its log kept free of one message that is noise for this algorithm: the built-in algorithms' plain
hyperparameter strings (`resnet18_v1b`, `3,224,224`) are not JSON, and the toolkit says so for each.
Before either, a GPU image on a machine without the NVIDIA driver is refused in one line (train/devices.py).
`serve` starts the inference server on the model in /opt/ml/model (magiccards.serve.server).
"""
from __future__ import annotations

import logging
import sys

TOOLKIT_LOGGER = "sagemaker-training-toolkit"
COMMANDS = ("train", "serve")


class HyperparameterNoise(logging.Filter):
    """Drop the toolkit's "Failed to parse hyperparameter ... to Json" lines; keep every other record."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to parse hyperparameter")


def preflight(command: str) -> bool:
    """`devices.preflight`: False (after one line, and for `train` the job's FailureReason) when this image
    cannot start MXNet here, e.g. the GPU image on a machine without the NVIDIA driver."""
    from magiccards.train import devices

    from magiccards.errors import DeviceError

    try:
        devices.preflight()
        return True
    except DeviceError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        if command == "train":
            from sagemaker_training import files

            files.write_failure_file(str(e))
        return False


def train() -> int:
    """The toolkit's `train`, with `HyperparameterNoise` on its logger."""
    logging.getLogger(TOOLKIT_LOGGER).addFilter(HyperparameterNoise())
    from sagemaker_training.cli.train import main as toolkit_train

    return toolkit_train() or 0


def serve() -> int:
    """The inference server on /opt/ml/model (SageMaker's hosting and batch-transform contract)."""
    from magiccards.serve.server import main as serve_main

    return serve_main()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv else "train"
    if command not in COMMANDS:
        print(f"error: the image runs 'train' or 'serve', not {command!r}", file=sys.stderr)
        return 2
    sys.argv = [command] + argv[1:]
    if not preflight(command):
        return 1
    return train() if command == "train" else serve()


if __name__ == "__main__":
    sys.exit(main())
