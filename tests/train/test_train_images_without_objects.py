"""Detection records that list no object (im2rec writes them for images without boxes) are left out, and said."""
import shutil

import mxnet as mx
import numpy as np
import pytest
from magiccards.container.local_run import run_local

from magiccards.errors import TrainingFailed

HP = {"network": "ssd_300_mobilenet0.25", "image_shape": "128", "epochs": "1", "mini_batch_size": "8",
      "use_pretrained_model": "0"}


def _strip_objects(packed, tmp_path, every: int):
    """A copy of the pack whose train records number 0, every, 2*every, ... keep only the label header."""
    data = tmp_path / "data"
    shutil.copytree(packed, data)
    src = mx.recordio.MXIndexedRecordIO(str(packed / "train.idx"), str(packed / "train.rec"), "r")
    dst = mx.recordio.MXIndexedRecordIO(str(data / "train.idx"), str(data / "train.rec"), "w")
    for n, key in enumerate(sorted(src.keys)):
        header, img = mx.recordio.unpack(src.read_idx(key))
        label = np.asarray(header.label, dtype=np.float32)
        if n % every == 0:
            label = label[:4]  # [4, 5, width, height]: no object
        dst.write_idx(n, mx.recordio.pack(mx.recordio.IRHeader(len(label), label, n, 0), img))
    src.close()
    dst.close()
    return data, len(src.keys)


@pytest.mark.parametrize("input_mode", ["File", "Pipe"])
def test_records_without_objects_are_left_out(packed_scenes, tmp_path, input_mode):
    data, total = _strip_objects(packed_scenes, tmp_path, every=4)
    lines = []
    run_local(data, tmp_path / "job", HP, input_mode=input_mode, log=lines.append)
    left_out = len(range(0, total, 4))
    assert any(f"note: {left_out} image(s) of train" in line and "left out" in line for line in lines), lines
    assert any(f"detection: ssd_300_mobilenet0.25, 2 classes, {total - left_out} training" in line for line in lines)
    assert (tmp_path / "job" / "output" / "success").is_file()


def test_a_channel_without_any_object_is_a_clear_error(packed_scenes, tmp_path):
    data, _ = _strip_objects(packed_scenes, tmp_path, every=1)
    with pytest.raises(TrainingFailed):
        run_local(data, tmp_path / "job", HP, log=lambda line: None)
    failure = (tmp_path / "job" / "output" / "failure").read_text()
    assert "no record of channel train lists an object" in failure and "Traceback" not in failure
