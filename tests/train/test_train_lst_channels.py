"""Images plus im2rec .lst files in channels train/train_lst (the built-in algorithms' second input form)."""
import shutil

import pytest
from magiccards.container.job import run_toolkit
from magiccards.container.layout import write_job_layout
from magiccards.data.pack import pack

pytestmark = pytest.mark.slow


def _run_job(job, lst_dir, images, hp):
    """Lay out a job whose image channels hold the image tree the .lst paths are relative to."""
    channels = {"train_lst": [lst_dir / "train.lst", lst_dir / "classes.txt"],
                "validation_lst": [lst_dir / "validation.lst"], "train": [], "validation": []}
    write_job_layout(job, channels, hp)
    for name in ("train", "validation"):
        shutil.rmtree(job / "input" / "data" / name)
        shutil.copytree(images, job / "input" / "data" / name)
    return run_toolkit(job, timeout=600)


def test_classification_from_images_and_lst(card_folders, tmp_path):
    pack(card_folders, tmp_path / "pack", val_fraction=0.25, workers=1, progress=False)
    r = _run_job(tmp_path / "job", tmp_path / "pack", card_folders,
                 {"network": "resnet18_v1b", "image_shape": "3,32,32", "epochs": "1", "mini_batch_size": "8"})
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "classification: resnet18_v1b, 4 classes, 32 training / 8 validation images (train.lst)" in r.stdout
    assert "Epoch[0] Validation-accuracy=" in r.stdout and (tmp_path / "job" / "output" / "success").is_file()


def test_detection_from_images_and_lst_leaves_out_rows_without_objects(card_scenes, tmp_path):
    pack(card_scenes, tmp_path / "pack", val_fraction=0.25, workers=1, progress=False)
    lst = tmp_path / "pack" / "train.lst"
    rows = [row.split("\t") for row in lst.read_text().splitlines()]
    rows[0] = rows[0][:5] + rows[0][-1:]  # index, 4, 5, width, height, path: an image listed without boxes
    lst.write_text("".join("\t".join(row) + "\n" for row in rows))
    r = _run_job(tmp_path / "job", tmp_path / "pack", card_scenes,
                 {"network": "ssd_300_mobilenet0.25", "image_shape": "128", "epochs": "1", "mini_batch_size": "4",
                  "use_pretrained_model": "0"})
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "note: 1 image(s) of train.lst list no object and are left out" in r.stdout
    assert f"{len(rows) - 1} training" in r.stdout and "validation mAP <score>=" in r.stdout


def test_an_image_missing_from_the_image_channel_is_a_clear_error(card_folders, tmp_path):
    pack(card_folders, tmp_path / "pack", val_fraction=0.25, workers=1, progress=False)
    images = tmp_path / "images"
    shutil.copytree(card_folders, images)
    gone = (tmp_path / "pack" / "train.lst").read_text().splitlines()[0].split("\t")[-1]
    (images / gone).unlink()
    r = _run_job(tmp_path / "job", tmp_path / "pack", images, {"network": "resnet18_v1b", "image_shape": "3,32,32"})
    failure = (tmp_path / "job" / "output" / "failure").read_text()
    assert r.returncode == 1 and f"1 image(s) listed in train.lst are not in channel train (first: {gone})" in failure
