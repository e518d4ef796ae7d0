"""What a training job reads from its layout (/opt/ml), in one object built from the toolkit's Environment.

SageMaker writes the layout in the cloud, `container/` writes it locally; the job only reads it, through
`sagemaker_training.environment.Environment` (which reads `SAGEMAKER_BASE_DIR`, default /opt/ml).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Job:
    hyperparameters: dict  # as SageMaker passes them (strings), resolved by train/hyperparameters.py
    channels: dict[str, Path]  # File-mode channel folders
    pipe_channels: frozenset[str]  # channels in Pipe mode: FIFOs <data_dir>/<channel>_<n>
    data_dir: Path  # input/data
    model_dir: Path
    output_dir: Path  # output/data
    checkpoints: Path
    num_gpus: int
    num_cpus: int
    current_host: str
    hosts: tuple[str, ...]
    interface: str | None

    @classmethod
    def from_environment(cls, env) -> Job:
        """The job of a `sagemaker_training.environment.Environment`."""
        base = Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml"))
        pipes = frozenset(name for name, cfg in env.input_data_config.items()
                          if cfg.get("TrainingInputMode") == "Pipe")
        return cls(hyperparameters=dict(env.hyperparameters),
                   channels={k: Path(v) for k, v in env.channel_input_dirs.items() if k not in pipes},
                   pipe_channels=pipes, data_dir=Path(env.input_dir) / "data", model_dir=Path(env.model_dir),
                   output_dir=Path(env.output_data_dir), checkpoints=base / "checkpoints", num_gpus=env.num_gpus,
                   num_cpus=env.num_cpus, current_host=env.current_host, hosts=tuple(sorted(env.hosts)),
                   interface=env.network_interface_name)

    @property
    def distributed(self) -> bool:
        return len(self.hosts) > 1

    @property
    def is_master(self) -> bool:
        """Only the first host writes the model."""
        return not self.hosts or self.current_host == self.hosts[0]

    def has_channel(self, name: str) -> bool:
        return name in self.channels or name in self.pipe_channels
