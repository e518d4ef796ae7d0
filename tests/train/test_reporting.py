"""The files a job writes to output/data read back as they were written (what benchmarks and users read)."""
import numpy as np
import pytest
from magiccards.train.reporting import read_results, write_confusion, write_history, write_per_class_ap


def test_a_detection_jobs_history_and_per_class_ap_read_back(tmp_path):
    history = [{"epoch": 0, "seconds": 1.5, "train_cross_entropy": 2.0, "train_smooth_l1": 1.0, "validation_map": 0.25},
               {"epoch": 1, "seconds": 1.4, "train_cross_entropy": 1.5, "train_smooth_l1": 0.8, "validation_map": 0.5}]
    write_history(tmp_path, history, "detection")
    write_per_class_ap(tmp_path, ["ace", "king"], [0.75, float("nan")])
    read, per_class = read_results(tmp_path)
    assert read == history
    assert per_class == {"ace": 0.75, "king": None}  # NaN (a class never seen in validation) reads as None
    assert (tmp_path / "curves.png").stat().st_size > 1000


def test_a_classification_jobs_per_class_accuracy_reads_back(tmp_path):
    write_history(tmp_path, [{"epoch": 0, "seconds": 1.0, "train_loss": 1.0, "train_accuracy": 0.5,
                              "validation_accuracy": 0.5}], "classification")
    write_confusion(tmp_path, np.array([[3, 1], [0, 4]]), ["nine", "ten"])
    history, per_class = read_results(tmp_path)
    assert history[0]["validation_accuracy"] == 0.5
    assert per_class == {"nine": 0.75, "ten": 1.0}


def test_no_per_class_file_reads_as_empty_and_no_history_is_an_error(tmp_path):
    write_history(tmp_path, [], "detection")
    assert read_results(tmp_path) == ([], {})
    with pytest.raises(FileNotFoundError):
        read_results(tmp_path / "missing")
