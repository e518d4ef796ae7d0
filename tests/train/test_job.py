"""Job.from_environment reads a laid-out /opt/ml through the toolkit's own Environment."""
import json
import subprocess
import sys

from magiccards.container.job import toolkit_env
from magiccards.container.layout import write_job_layout


def test_the_job_object_of_a_layout(tmp_path):
    (tmp_path / "classes.txt").write_text("a\nb\n")
    job_dir = write_job_layout(tmp_path / "job", {"train": [], "validation": [tmp_path / "classes.txt"]},
                               {"epochs": 2, "network": "resnet18_v1b"}, pipe_channels={"train"},
                               hosts=("algo-1", "algo-2"), current_host="algo-2")
    code = """
import json
from sagemaker_training import environment
from magiccards.train.job import Job
job = Job.from_environment(environment.Environment())
print(json.dumps({"hp": job.hyperparameters, "channels": sorted(job.channels), "pipes": sorted(job.pipe_channels),
                  "model": str(job.model_dir), "checkpoints": str(job.checkpoints), "hosts": job.hosts,
                  "master": job.is_master, "distributed": job.distributed, "gpus": job.num_gpus}))
"""
    r = subprocess.run([sys.executable, "-c", code], env=toolkit_env(job_dir), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout.strip().splitlines()[-1])
    assert job["hp"] == {"epochs": 2, "network": "resnet18_v1b"}  # the toolkit json-decodes what it can
    assert job["channels"] == ["validation"] and job["pipes"] == ["train"]
    assert job["model"] == str(job_dir / "model") and job["checkpoints"] == str(job_dir / "checkpoints")
    assert job["hosts"] == ["algo-1", "algo-2"] and job["master"] is False and job["distributed"] is True
    assert job["gpus"] == 0
