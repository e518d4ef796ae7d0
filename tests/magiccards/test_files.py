"""atomic_path: a file that exists is complete; a failed write leaves the old file and no temporary."""
import pytest

from magiccards.files import atomic_path, temporary_name, write_text_atomic


def test_success_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "report.json"
    write_text_atomic(target, "one")
    write_text_atomic(target, "two")
    assert target.read_text() == "two" and sorted(p.name for p in target.parent.iterdir()) == ["report.json"]


def test_failure_keeps_the_old_file(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old" and not temporary_name(target).exists()


def test_a_folder_is_replaced_whole(tmp_path):
    target = tmp_path / "checkpoint"
    target.mkdir()
    (target / "stale").write_text("x")
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "model.params").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["model.params"]
