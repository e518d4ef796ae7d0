"""The model-directory contract: opening a folder, a model.tar.gz or a channel; clear errors; safe unpacking."""
import io
import json
import tarfile

import pytest

from magiccards import model_dir as md
from magiccards.errors import ModelDirError


def _model(folder, task="detection", classes=("ace", "king")):
    md.write_metadata(folder, task=task, network="ssd_300_mobilenet0.25", classes=list(classes),
                      input_shape=(3, 256, 256), hyperparameters={"epochs": "3"}, metrics={"validation_map": 0.5},
                      dataset_sizes={"train": 10, "validation": 2}, framework={"mxnet": "1.9.1"})
    # a graph that says nothing of its classes (a data node only): the class count is not checked against it
    (folder / md.symbol_name(task)).write_text(json.dumps({"nodes": [{"op": "null", "name": "data", "inputs": []}],
                                                           "heads": [[0, 0, 0]]}))
    (folder / md.params_name(task)).write_bytes(b"\0" * 16)
    (folder / md.TRAINING_STATE).write_bytes(b"\0" * 16)
    return folder


def _tar(folder, archive, prefix=""):
    with tarfile.open(archive, "w:gz") as tar:
        for p in sorted(folder.iterdir()):
            tar.add(p, arcname=prefix + p.name)
    return archive


def test_a_folder_opens_with_what_its_card_says(tmp_path):
    m = md.open_model_dir(_model(tmp_path / "model"))
    assert (m.task, m.network, m.prefix, m.epoch) == ("detection", "ssd_300_mobilenet0.25", "model_algo_1", 0)
    assert m.classes == ("ace", "king") and m.input_shape == (3, 256, 256)
    assert m.mean == md.MEAN and m.std == md.STD
    assert m.symbol_file.name == "model_algo_1-symbol.json" and m.params_file.name == "model_algo_1-0000.params"
    assert m.card["metrics"]["validation_map"] == 0.5 and m.exports() == []
    assert json.loads((tmp_path / "model" / md.SHAPES).read_text()) == [{"name": "data", "shape": [1, 3, 256, 256]}]
    with pytest.raises(AttributeError):
        m.task = "classification"  # frozen


@pytest.mark.parametrize("layout", ["archive", "channel with archive", "channel with nested folder"])
def test_an_archive_or_a_channel_holding_either_opens(tmp_path, layout):
    model = _model(tmp_path / "model", task="classification")
    if layout == "archive":
        given = _tar(model, tmp_path / "model.tar.gz")
    elif layout == "channel with archive":
        (tmp_path / "channel").mkdir()
        given = tmp_path / "channel"
        _tar(model, given / "model.tar.gz")
    else:
        given = tmp_path / "channel"
        (given / "job").mkdir(parents=True)
        model.rename(given / "job" / "model")
    m = md.open_model_dir(given, tmp_path / "work", require=(md.TRAINING_STATE,))
    assert m.task == "classification" and m.prefix == "image-classification"
    assert m.training_state_file.is_file()


def test_missing_files_are_named(tmp_path):
    model = _model(tmp_path / "model")
    (model / md.params_name("detection")).unlink()
    (model / md.TRAINING_STATE).unlink()
    with pytest.raises(ModelDirError, match="lacks model_algo_1-0000.params, training-state.params"):
        md.open_model_dir(model, require=(md.TRAINING_STATE,))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelDirError, match="holds no model"):
        md.open_model_dir(tmp_path / "empty")
    with pytest.raises(ModelDirError, match="does not exist"):
        md.open_model_dir(tmp_path / "nowhere")


def test_a_bad_card_is_a_clear_error(tmp_path):
    model = _model(tmp_path / "model")
    (model / md.CARD).write_text("{not json")
    with pytest.raises(ModelDirError, match="cannot be read as JSON"):
        md.open_model_dir(model)
    (model / md.CARD).write_text(json.dumps({"task": "segmentation"}))
    with pytest.raises(ModelDirError, match="names task 'segmentation'"):
        md.open_model_dir(model)


def _evil_archive(path, member: tarfile.TarInfo, data: bytes = b"x"):
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


@pytest.mark.parametrize("standard_filter", [True, False], ids=["python-filter", "older-python"])
@pytest.mark.parametrize("name, kind", [("/etc/evil", "file"), ("../evil", "file"), ("link", "symlink"),
                                        ("sub/link", "relative symlink"), ("hard", "hard link"), ("dev", "device")])
def test_unsafe_archives_are_refused(tmp_path, monkeypatch, name, kind, standard_filter):
    """Refused by our own checks too: the image's Debian Python 3.11.2 has no tarfile filter."""
    if not standard_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    member = tarfile.TarInfo(name)
    if kind == "symlink":
        member.type, member.linkname = tarfile.SYMTYPE, "/etc/passwd"
    elif kind == "relative symlink":
        member.type, member.linkname = tarfile.SYMTYPE, "../../etc/passwd"
    elif kind == "hard link":
        member.type, member.linkname = tarfile.LNKTYPE, "../outside"
    elif kind == "device":
        member.type = tarfile.CHRTYPE
    else:
        member.size = 1
    archive = _evil_archive(tmp_path / "model.tar.gz", member)
    with pytest.raises(ModelDirError, match="cannot be unpacked"):
        md.unpack(archive, tmp_path / "out")
    assert not (tmp_path / "evil").exists()


def test_an_archive_too_large_once_unpacked_is_refused(tmp_path):
    archive = _tar(_model(tmp_path / "model"), tmp_path / "model.tar.gz")
    with pytest.raises(ModelDirError, match="would unpack to"):
        md.unpack(archive, tmp_path / "out", max_bytes=10)


def test_a_detector_whose_classes_disagree_with_its_graph_is_refused(tmp_path):
    """The shipped base detector answers one class ('card'): a classes.txt of two is another model's."""
    import shutil
    from pathlib import Path
    base = Path(md.__file__).resolve().parents[1] / "train" / "base_models" / "ssd_300_mobilenet0.25-card"
    model = tmp_path / "model"
    shutil.copytree(base, model)
    assert md.network_classes(model / "model_algo_1-symbol.json", "detection") == 1
    (model / md.CLASSES).write_text("card\nback\n")
    with pytest.raises(ModelDirError, match="names 2 classes, but the network in model_algo_1-symbol.json has 1"):
        md.open_model_dir(model)
