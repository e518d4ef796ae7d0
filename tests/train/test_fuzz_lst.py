"""The job's .lst reader (channels `train` + `train_lst`) under random truncations and byte flips: a clean
DataError or a clean dataset, never another exception or a hang (the fuzzer of tests/data)."""
import pytest
from magiccards.train.readers import open_lst_channel
from PIL import Image

from ..data.test_fuzz_readers import _fuzz_file, clean_outcome

ROWS = {"classification": ["0\t1\tcard/a.jpg", "1\t0\tking/b.jpg", "2\t1\tcard/c.jpg"],
        "detection": ["0\t2\t5\t0\t0.1\t0.1\t0.6\t0.7\tcard/a.jpg", "1\t2\t5\t1\t0.2\t0.2\t0.9\t0.8\tking/b.jpg",
                      "2\t2\t5\t0\t0.0\t0.0\t1.0\t1.0\t1\t0.3\t0.3\t0.5\t0.5\tcard/c.jpg"]}


@pytest.mark.parametrize("task", ROWS)
def test_lst_reader(tmp_path, task):
    images, lsts = tmp_path / "images", tmp_path / "lst"
    for rel in ("card/a.jpg", "king/b.jpg", "card/c.jpg"):
        (images / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30), (90, 20, 20)).save(images / rel)
    lsts.mkdir()
    (lsts / "train.lst").write_text("\n".join(ROWS[task]) + "\n")
    data = clean_outcome(lambda: open_lst_channel(images, lsts, task), task)
    assert len(data.dataset) == 3
    _fuzz_file(lsts / "train.lst", lambda: open_lst_channel(images, lsts, task), seed=7)


@pytest.mark.parametrize("row, message", [
    ("0\tnan\tcard/a.jpg", "row 1 holds a label that is not a finite number"),
    ("0\t1\t../../etc/passwd", "which is not a path inside the image channel"),
    ("0\tcard/a.jpg", "row 1 is not 'index<TAB>label(s)<TAB>path'"),
])
def test_lst_rows_that_cannot_be_used(tmp_path, row, message):
    (tmp_path / "images").mkdir()
    (tmp_path / "lst").mkdir()
    (tmp_path / "lst" / "train.lst").write_text(row + "\n")
    error = clean_outcome(lambda: open_lst_channel(tmp_path / "images", tmp_path / "lst", "classification"), row)
    assert message in str(error), error
