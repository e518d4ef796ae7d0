"""The cloud verbs against an endpoint that does not answer and arguments no job could have: one line each,
before any call where the mistake can be seen offline."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

UNREACHABLE = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1", "AWS_PROFILE": ""}


def _cli(*args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({k: v for k, v in UNREACHABLE.items() if v})
    return subprocess.run([sys.executable, "-m", "magiccards.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.mark.parametrize("args, message", [
    (["logs", "my-job"], "describing training job my-job: cannot reach http://127.0.0.1:9"),
    (["logs", "my-job", "--follow"], "describing training job my-job: cannot reach http://127.0.0.1:9"),
    (["stop", "my-job"], "describing training job my-job: cannot reach http://127.0.0.1:9"),
    (["stop", ""], "'' is not a training job name"),
    (["logs", "bad_name!"], "'bad_name!' is not a training job name"),
    # offline checks come first: a mistake is named, not hidden behind "cannot reach"
    (["launch", "--data", "s3://my-bucket/cards", "--role", "R", "--instance-count", "0"], "--instance-count 0: from 1"),
    (["launch", "--data", "s3://my-bucket/cards", "--role", "R", "--instance-count", "100000"], "--instance-count 100000"),
    (["launch", "--data", "s3://my-bucket/cards", "--role", "R", "--volume-size", "0"], "--volume-size 0"),
    (["launch", "--data", "s3://my-bucket/cards", "--role", "R", "--name", "bad_name!"], "does not match the pattern"),
    (["launch", "--data", "s3://my-bucket/cards", "--role", "R"], "cannot reach http://127.0.0.1:9"),
])
def test_one_line_each(args, message):
    done = _cli(*args)
    assert done.returncode == 1, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
