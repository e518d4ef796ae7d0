"""SIGTERM (StopTrainingJob, spot interruption, docker stop) writes a checkpoint; re-running resumes from it."""
import signal
import time

import numpy as np
import pytest
from magiccards.container.job import start_toolkit
from magiccards.container.layout import channels_from_pack_dir, write_job_layout
from magiccards.container.local_run import run_local

from ..helpers import QUICK_HP, final_weights

pytestmark = pytest.mark.slow

HP = dict(QUICK_HP, epochs="3", seed="3")


def test_sigterm_checkpoints_and_resume_matches_uninterrupted(packed_cards, tmp_path):
    run_local(packed_cards, tmp_path / "a", HP, log=lambda line: None)
    reference = final_weights(tmp_path / "a", 3)

    job = tmp_path / "b"
    write_job_layout(job, channels_from_pack_dir(packed_cards), HP)
    proc = start_toolkit(job)
    sent = None
    for line in proc.stdout:
        if sent is None and line.startswith("Epoch[0] Time cost"):
            proc.send_signal(signal.SIGTERM)  # the next epoch is under way
            sent = time.monotonic()
    code = proc.wait(timeout=120)
    assert sent is not None and code == 1
    assert time.monotonic() - sent < 60
    failure = (job / "output" / "failure").read_text()
    assert "training stopped by SIGTERM" in failure and "run the job again to resume" in failure
    saved = sorted(p.name for p in (job / "checkpoints").glob("epoch-*"))
    assert saved[-1].startswith("epoch-0001-batch-") or saved[-1] == "epoch-0002-batch-000000"

    lines = []
    run_local(packed_cards, job, HP, log=lines.append)
    assert any(line.startswith("Resuming from checkpoint epoch-000") for line in lines)
    assert not any(line.startswith("Epoch[0]") for line in lines)
    resumed = final_weights(job, 3)
    assert resumed.keys() == reference.keys()
    for name in reference:
        np.testing.assert_allclose(resumed[name].asnumpy(), reference[name].asnumpy(), rtol=1e-3, atol=1e-4,
                                   err_msg=name)
