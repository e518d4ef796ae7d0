"""Every error a user can cause, in one place. Each message says what is wrong and what to do.

These are plain exceptions (no MXNet, no training toolkit), so every room can raise them. Three
places turn them into what their caller expects, and nowhere else does:

- the training job (`train/entry.py: main`) re-raises them as the toolkit's `ClientError`, which the
  toolkit writes to `/opt/ml/output/failure` (the job's FailureReason) and exits 1;
- the CLI (`magiccards/cli.py: main`) prints `error: <message>` and exits with `exit_code`;
- the inference server (later: `serve/`) answers with the error's HTTP status.

Unexpected errors are not caught: they keep their traceback.
"""
from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input or setup; the message names it and says how to fix it."""

    exit_code = 1


class DataError(UserError):
    """The dataset (images, annotations, RecordIO files, channels) cannot be used as given."""


class HyperparameterError(UserError):
    """A hyperparameter is unknown, malformed or out of its allowed range."""


class ModelDirError(UserError):
    """A model directory (or model.tar.gz) is missing a file of the contract or cannot be read."""


class DockerUnavailable(UserError):
    """No Docker engine answers."""


class ImageBuildFailed(UserError):
    """Building an image (the training image or the local base image) failed."""


class TrainingFailed(UserError):
    """A training job exited non-zero; the message is SageMaker's FailureReason (output/failure)."""


class TrainingStopped(UserError):
    """SIGTERM arrived (StopTrainingJob, spot interruption, docker stop): a checkpoint was written."""

    exit_code = 143  # 128 + SIGTERM, as a shell reports a process ended by it


class AwsConfigError(UserError):
    """AWS credentials, region, endpoint or permissions do not allow the call."""


class DeviceError(UserError):
    """The image and the machine do not match: the GPU image without an NVIDIA driver, GPUs asked of the CPU image."""
