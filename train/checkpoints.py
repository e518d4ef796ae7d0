"""Checkpoints in /opt/ml/checkpoints (synced with S3 by SageMaker; restored at the start of a spot job).

A checkpoint is a folder `epoch-EEEE-batch-BBBBBB` holding the network parameters, the trainer state
(optimizer moments and learning-rate schedule position) and `state.json` (history, best score, rng
seed). It is written under a temporary name and renamed, so a folder that exists is complete.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from magiccards.files import atomic_path

from .hyperparameters import Hyperparameters

KEEP = 2


# hyperparameters that do not change what a job computes: a rerun may change them and still resume
RUNTIME_ONLY = ("num_workers", "checkpoint_frequency")


def job_fingerprint(hp: Hyperparameters, data: dict[str, str | None]) -> dict:
    """What a checkpoint belongs to: the data channels' digests and the hyperparameters that change the result."""
    return {"data": data, "hyperparameters": {k: v for k, v in hp.as_strings().items() if k not in RUNTIME_ONLY}}


class Checkpoints:
    """`optimizer_states=False` for distributed jobs, whose optimizer states live on the parameter servers."""

    def __init__(self, directory: Path, optimizer_states: bool = True):
        self.directory = Path(directory)
        self.optimizer_states = optimizer_states

    def save(self, net, trainer, state: dict) -> Path:
        """Write a checkpoint for `state['epoch']` / `state['batch']` (the next step to run)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / f"epoch-{state['epoch']:04d}-batch-{state['batch']:06d}"
        with atomic_path(final) as tmp:
            tmp.mkdir()
            net.save_parameters(str(tmp / "model.params"))
            if self.optimizer_states:
                trainer.save_states(str(tmp / "trainer.states"))
            (tmp / "state.json").write_text(json.dumps(state, indent=1))
        for old in self.all()[:-KEEP]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def all(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir()
                      if p.is_dir() and p.name.startswith("epoch-") and (p / "state.json").is_file())

    def latest(self) -> tuple[Path, dict] | None:
        for path in reversed(self.all()):
            try:
                return path, json.loads((path / "state.json").read_text())
            except ValueError:
                continue
        return None

    @staticmethod
    def restore(path: Path, net, trainer) -> None:
        net.load_parameters(str(path / "model.params"), ignore_extra=False)
        if (path / "trainer.states").is_file():
            trainer.load_states(str(path / "trainer.states"))
