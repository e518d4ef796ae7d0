"""Errors a user can cause. Each message says what is wrong and what to do.

They subclass the training toolkit's ClientError, so inside a SageMaker job the toolkit writes the
message to /opt/ml/output/failure (the job's FailureReason) instead of a "Framework Error" traceback;
the CLI prints the same message and exits non-zero.
"""
from sagemaker_training.errors import ClientError


class UserError(ClientError):
    """A mistake in the user's input; the message names it and says how to fix it."""


class DataError(UserError):
    """The dataset (images, annotations, RecordIO files) cannot be used as given."""


class HyperparameterError(UserError):
    """A hyperparameter is unknown, malformed or out of its allowed range."""
