"""The File-mode datasets under the loader's threads: every read returns the record asked for."""
import pickle
import random
import threading
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
from magiccards.train.readers import open_channel

from ..helpers import run_in_child


def _channel(folder, task: str, n: int = 60):
    """A .rec whose record k holds an image k + 16 pixels high, labelled k (classification) or with one box of
    class k (detection)."""
    folder.mkdir()
    writer = mx.recordio.MXIndexedRecordIO(str(folder / "train.idx"), str(folder / "train.rec"), "w")
    for k in range(n):
        image = np.full((k + 16, 24, 3), k, np.uint8)
        label = float(k) if task == "classification" else [2, 5, k, 0.1, 0.1, 0.9, 0.9]
        writer.write_idx(k, mx.recordio.pack_img(mx.recordio.IRHeader(0, label, k, 0), image, img_fmt=".png"))
    writer.close()
    return folder


@pytest.mark.parametrize("task", ["classification", "detection"])
def test_threads_reading_at_once_get_their_own_records(tmp_path, task):
    """MXNet's record reader has one file position: six loader threads reading at once got one another's
    records and 'Invalid RecordIO File' errors before reads were serialised (decoding stays parallel). Run in a
    process of its own: a native crash ends this test, not the session."""
    run_in_child(__name__, "reads_in_threads", tmp_path, task)


def reads_in_threads(tmp_path, task):
    tmp_path = Path(tmp_path)
    data = open_channel(_channel(tmp_path / "train", task), task, tmp_path / "work", progress=False,
                        log=lambda line: None)
    dataset = pickle.loads(pickle.dumps(data.dataset))  # as a loader process gets it: a lock of its own
    wrong, errors = [], []

    def work(seed):
        rng = random.Random(seed)
        for _ in range(400):
            k = rng.randrange(len(dataset))
            try:
                image, label = dataset[k]
            except Exception as e:  # noqa: BLE001 - counted: there must be none
                errors.append(e)
                continue
            got = int(label) if task == "classification" else int(label[0, 4])
            if got != k or image.shape[0] != k + 16:
                wrong.append((k, got))

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and not wrong, (errors[:3], wrong[:3])
