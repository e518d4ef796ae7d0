"""SIGTERM (StopTrainingJob, spot interruption, docker stop) writes a checkpoint; re-running resumes from it."""
import json
import signal
import time

import numpy as np
import pytest
from magiccards.container.job import start_toolkit
from magiccards.container.layout import channels_from_pack_dir, write_job_layout
from magiccards.container.local_run import run_local
from magiccards.data.pack import pack

from magiccards.errors import TrainingFailed

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


def test_a_job_folder_is_never_silently_reused_for_another_job(packed_cards, tmp_path):
    """Checkpoints record their job: other data or other hyperparameters are refused; --fresh starts anew;
    a finished job run again says so and leaves its model alone."""
    job = tmp_path / "job"
    quick = dict(HP, epochs="2")
    run_local(packed_cards, job, quick, log=lambda line: None)
    model = job / "model" / "image-classification-0000.params"
    written = model.stat().st_mtime_ns

    lines = []
    run_local(packed_cards, job, quick, log=lines.append)  # the same job again
    assert any("this job is already done" in line for line in lines), lines[-20:]
    assert model.stat().st_mtime_ns == written

    with pytest.raises(TrainingFailed, match=r"belongs to another job \(changed: epochs 2 -> 1\).*--fresh"):
        run_local(packed_cards, job, dict(quick, epochs="1"), log=lambda line: None)
    other = tmp_path / "other"  # the same photos packed anew, at another JPEG quality
    pack(packed_cards.parent / "images", other, val_fraction=0.25, seed=0, quality=80, workers=1, progress=False,
         log=lambda *a: None)
    with pytest.raises(TrainingFailed, match=r"changed: the train data, the validation data\)"):
        run_local(other, job, quick, log=lambda line: None)

    lines = []
    run_local(packed_cards, job, dict(quick, epochs="1"), fresh=True, log=lines.append)
    assert any("--fresh: the earlier checkpoints are now in" in line for line in lines)
    assert not any("Resuming" in line for line in lines) and model.stat().st_mtime_ns != written
    assert len(list(job.glob("checkpoints-before-*"))) == 1


def test_a_damaged_checkpoint_falls_back_to_the_one_before(packed_cards, tmp_path):
    job = tmp_path / "job"
    run_local(packed_cards, job, dict(HP, epochs="2", checkpoint_frequency="1"), log=lambda line: None)
    newest = sorted((job / "checkpoints").glob("epoch-*"))[-1]
    params = newest / "model.params"
    params.write_bytes(params.read_bytes()[: params.stat().st_size // 2])  # a truncated upload
    state = json.loads((newest / "state.json").read_text())
    state["finished"] = False
    (newest / "state.json").write_text(json.dumps(state))
    lines = []
    run_local(packed_cards, job, dict(HP, epochs="2", checkpoint_frequency="1"), log=lines.append)
    assert any(f"checkpoint {newest.name} is damaged" in line and "falling back" in line for line in lines), lines[-30:]
    assert (job / "output" / "success").is_file()
