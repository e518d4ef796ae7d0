"""Stopping `magiccards train` never loses a run: SIGTERM and SIGHUP reach the job, which checkpoints;
the same command resumes and ends with the weights of an uninterrupted run; a job whose log reader
died trains on."""
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from magiccards.container.local_run import run_local

from ..helpers import QUICK_HP, final_weights

pytestmark = pytest.mark.slow
HP = dict(QUICK_HP, epochs="3", seed="7")
ARGS = [a for k, v in HP.items() for a in (f"--{k}", v)]


@pytest.fixture(scope="module")
def reference(packed_cards, tmp_path_factory):
    job = tmp_path_factory.mktemp("uninterrupted")
    run_local(packed_cards, job, HP, log=lambda line: None)
    return final_weights(job, 3)


def _start_cli(data, job):
    return subprocess.Popen([sys.executable, "-m", "magiccards.cli", "train", str(data), "--job-dir", str(job), *ARGS],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_first_epoch(proc):
    for line in proc.stdout:
        if line.startswith("Epoch[0] Time cost"):
            return
    raise AssertionError(f"the job ended before its first epoch: {proc.stderr.read()}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_checkpoints_and_the_rerun_resumes(packed_cards, tmp_path, reference, sig):
    job = tmp_path / "job"
    proc = _start_cli(packed_cards, job)
    _wait_for_first_epoch(proc)
    proc.send_signal(sig)
    sent = time.monotonic()
    rest, err = proc.communicate(timeout=180)
    assert proc.returncode == 143, err
    assert time.monotonic() - sent < 120
    assert f"stopped by {sig.name}: the job wrote a checkpoint" in err and "Traceback" not in err
    assert "BrokenPipeError" not in (job / "output" / "failure").read_text()
    assert list((job / "checkpoints").glob("epoch-*"))

    again = subprocess.run([sys.executable, "-m", "magiccards.cli", "train", str(packed_cards), "--job-dir", str(job),
                            *ARGS], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "Resuming from checkpoint epoch-000" in again.stdout
    resumed = final_weights(job, 3)
    for name in reference:
        np.testing.assert_allclose(resumed[name].asnumpy(), reference[name].asnumpy(), rtol=1e-3, atol=1e-4,
                                   err_msg=name)


def test_the_job_trains_on_when_its_log_reader_dies(packed_cards, tmp_path):
    job = tmp_path / "job"
    proc = _start_cli(packed_cards, job)
    _wait_for_first_epoch(proc)
    proc.kill()  # SIGKILL: the CLI cannot forward anything; the job's stdout pipe breaks
    proc.wait()
    proc.stdout.close()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (job / "output" / "success").exists():
        assert not (job / "output" / "failure").exists(), (job / "output" / "failure").read_text()
        time.sleep(1)
    assert (job / "output" / "success").exists()
    assert (job / "model" / "image-classification-0000.params").is_file()
