"""The SageMaker job layout (/opt/ml), written for local runs exactly as SageMaker writes it.

    input/config/hyperparameters.json   every value a string
    input/config/inputdataconfig.json   {channel: {ContentType, TrainingInputMode, S3DistributionType, RecordWrapperType}}
    input/config/resourceconfig.json    {current_host, hosts, network_interface_name, ...}
    input/data/<channel>/               the channel's files (File mode)
    model/  output/data/  checkpoints/
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from magiccards.data.crops import CROP_RULE_FILE
from magiccards.errors import DataError
from magiccards.files import writing

RECORDIO = "application/x-recordio"
SPLIT_CHANNELS = {"train": "train", "validation": "validation"}


def channels_from_pack_dir(data_dir: Path) -> dict[str, list[Path]]:
    """Channels `train` and `validation` from a `magiccards pack` folder (.rec, .idx, classes.txt, and the
    crop-rule.json of `pack --crops`, which the model card records)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"data folder {data_dir} does not exist")
    channels = {}
    for split, channel in SPLIT_CHANNELS.items():
        rec = data_dir / f"{split}.rec"
        if rec.is_file():
            files = [rec] + [p for p in (data_dir / f"{split}.idx", data_dir / "classes.txt", data_dir / CROP_RULE_FILE)
                             if p.is_file()]
            channels[channel] = files
    if "train" not in channels:
        raise DataError(f"{data_dir} holds no train.rec; pack your images first: magiccards pack IMAGES {data_dir}")
    return channels


def write_job_layout(base: Path, channels: dict[str, list[Path]], hyperparameters: dict, *,
                     pipe_channels: set[str] = frozenset(), hosts: tuple[str, ...] = ("algo-1",),
                     current_host: str = "algo-1", link: bool = True) -> Path:
    """Lay out `base` like /opt/ml for one host; File-mode channel files are symlinked (or copied).

    A folder that cannot be written (read-only, under a file, disk full) is a UserError.

    Channels in `pipe_channels` are declared `TrainingInputMode: Pipe` and get no folder: their
    FIFOs appear in input/data/ (container/pipe_feeder.py).
    """
    base = Path(base)
    with writing(f"the job folder {base}"):
        config = base / "input" / "config"
        config.mkdir(parents=True, exist_ok=True)
        for sub in ("model", "output/data", "checkpoints"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        _write(config / "hyperparameters.json", {str(k): _string(v) for k, v in hyperparameters.items()})
        _write(config / "inputdataconfig.json", {
            name: {"ContentType": RECORDIO, "TrainingInputMode": "Pipe" if name in pipe_channels else "File",
                   "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"} for name in channels})
        _write(config / "resourceconfig.json", {
            "current_host": current_host, "hosts": sorted(hosts), "network_interface_name": "eth0",
            "current_group_name": "homogeneousCluster", "current_instance_type": "local",
            "instance_groups": [{"instance_group_name": "homogeneousCluster", "instance_type": "local",
                                 "hosts": sorted(hosts)}]})
        for name, files in channels.items():
            if name in pipe_channels:
                continue
            target = base / "input" / "data" / name
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            for f in files:
                f = Path(f).resolve()
                if link:
                    os.symlink(f, target / f.name)
                else:
                    shutil.copy2(f, target / f.name)
    return base


def pipe_mode_channels(channels: dict[str, list[Path]]) -> tuple[dict[str, list[Path]], dict[str, Path]]:
    """Channels for a Pipe-mode job: each split's .rec streams through FIFOs; classes.txt goes in a
    small File-mode channel `classes`. Returns (channels for the layout, {channel: .rec to feed})."""
    feeds = {name: next(f for f in files if Path(f).suffix == ".rec") for name, files in channels.items()}
    layout = {name: [] for name in feeds}
    for wanted in ("classes.txt", CROP_RULE_FILE):
        found = [f for files in channels.values() for f in files if Path(f).name == wanted]
        if found:
            layout.setdefault("classes", []).append(found[0])
    return layout, feeds


def _string(value) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def _write(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=1))
