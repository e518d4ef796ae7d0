import io
import subprocess
import sys

import mxnet as mx
import numpy as np
from magiccards.data import cards
from magiccards.data.pack import pack
from PIL import Image

from ..helpers import labels_of, lst_rows, read_all, run_cli


def test_round_trip_with_image_record_iter(card_folders, tmp_path):
    r = pack(card_folders, tmp_path, val_fraction=0.25, seed=1, resize=64, workers=2, progress=False)
    assert r.task == "classification" and r.images == {"train": 32, "validation": 8}
    assert (tmp_path / "classes.txt").read_text().split() == cards.class_names(4)  # synth's order, kept by pack
    assert r.counts["validation"] == {name: 2 for name in sorted(cards.class_names(4))}  # stratified
    for split, n in r.images.items():
        rows = lst_rows(tmp_path / f"{split}.lst")
        assert len(rows) == n
        it = mx.io.ImageRecordIter(path_imgrec=str(tmp_path / f"{split}.rec"), data_shape=(3, 64, 64),
                                   batch_size=n, shuffle=False, round_batch=False)
        batch = it.next()
        labels = batch.label[0].asnumpy()
        assert labels.tolist() == [float(row[1]) for row in rows]
        assert batch.data[0].shape == (n, 3, 64, 64)
        assert float(batch.data[0].asnumpy().std()) > 10  # real pixels, not blank


def test_lst_paths_and_labels_match_the_folders(card_folders, tmp_path):
    pack(card_folders, tmp_path, val_fraction=0, workers=1, progress=False)
    classes = (tmp_path / "classes.txt").read_text().split()
    rows = lst_rows(tmp_path / "train.lst")
    assert [int(r[0]) for r in rows] == list(range(40))
    for row in rows:
        assert (card_folders / row[2]).is_file()
        assert classes[int(float(row[1]))] == row[2].split("/")[0]
    assert not (tmp_path / "validation.rec").exists()


def test_resize_keeps_aspect_and_shorter_side(card_folders, tmp_path):
    pack(card_folders, tmp_path, val_fraction=0, resize=48, quality=80, workers=2, progress=False)
    for header, data in read_all(tmp_path / "train.rec")[:5]:
        assert Image.open(io.BytesIO(data)).size == (48, 48)


def test_pass_through_stores_original_bytes(card_folders, tmp_path):
    pack(card_folders, tmp_path, val_fraction=0, pass_through=True, workers=2, progress=False)
    rows = lst_rows(tmp_path / "train.lst")
    for (header, data), row in zip(read_all(tmp_path / "train.rec"), rows):
        assert data == (card_folders / row[2]).read_bytes()
        assert labels_of(header)[0] == float(row[1])


def test_im2rec_packs_our_lst_to_the_same_labels(card_folders, tmp_path):
    """Our .lst is im2rec's format: mxnet's own im2rec reads it and writes the same labels."""
    pack(card_folders, tmp_path, val_fraction=0, workers=1, progress=False)
    (tmp_path / "ref").mkdir()
    (tmp_path / "ref" / "train.lst").write_text((tmp_path / "train.lst").read_text())
    subprocess.run([sys.executable, "-m", "mxnet.tools.im2rec", "--num-thread", "1", "--pass-through",
                    str(tmp_path / "ref" / "train.lst"), str(card_folders)], check=True, capture_output=True)
    ours = read_all(tmp_path / "train.rec")
    theirs = read_all(tmp_path / "ref" / "train.rec")
    assert len(ours) == len(theirs) == 40
    for (h1, _), (h2, _) in zip(ours, theirs):
        assert np.array_equal(labels_of(h1), labels_of(h2)) and h1.id == h2.id


def test_cli_prints_counts(card_folders, tmp_path):
    r = run_cli("pack", card_folders, tmp_path / "out", "--resize", "64", "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert "train: 32 images" in r.stdout and "validation: 8 images" in r.stdout
    assert (tmp_path / "out" / "pack-report.json").is_file()


def test_pure_python_writer_matches_mxnet_byte_for_byte(tmp_path):
    """Including records that contain the RecordIO magic number (split and re-joined by readers)."""
    from magiccards.data.recordio_writer import IndexedRecordWriter, pack_image_record
    magic = (0xCED7230A).to_bytes(4, "little")
    payloads = [b"plain jpeg bytes", magic + b"abcd" + magic, b"xy" + magic + b"zz" + magic + b"tail!", b"", magic]
    labels = [3.0, np.array([4, 5, 10, 20, 0, 0.1, 0.2, 0.3, 0.4], np.float32), 1.0, 0.0, 2.0]
    ours = IndexedRecordWriter(tmp_path / "a.idx", tmp_path / "a.rec")
    theirs = mx.recordio.MXIndexedRecordIO(str(tmp_path / "b.idx"), str(tmp_path / "b.rec"), "w")
    for i, (label, data) in enumerate(zip(labels, payloads)):
        ours.write_idx(i, pack_image_record(label, i, data))
        theirs.write_idx(i, mx.recordio.pack(mx.recordio.IRHeader(0, label, i, 0), data))
    ours.close()
    theirs.close()
    assert (tmp_path / "a.rec").read_bytes() == (tmp_path / "b.rec").read_bytes()
    assert (tmp_path / "a.idx").read_text() == (tmp_path / "b.idx").read_text()
    reader = mx.recordio.MXIndexedRecordIO(str(tmp_path / "a.idx"), str(tmp_path / "a.rec"), "r")
    for i, data in enumerate(payloads):
        header, payload = mx.recordio.unpack(reader.read_idx(i))
        assert payload == data and header.id == i
