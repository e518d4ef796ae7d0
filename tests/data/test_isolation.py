"""The dataset tools start without MXNet, GluonCV or the training toolkit (issue: a data/ room)."""
import json
import subprocess
import sys

HEAVY = ("mxnet", "gluoncv", "sagemaker_training")


def _loaded_after(code: str) -> list[str]:
    probe = code + f"\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_every_data_module_imports_without_the_training_stack():
    modules = ["cards", "charts", "encode", "inspect", "labels", "load", "pack", "recordio_reader",
               "recordio_writer", "samples", "scenes", "split", "synth", "workers", "formats",
               "formats.class_folders", "formats.coco", "formats.common", "formats.csv_boxes",
               "formats.ground_truth", "formats.sagemaker_json", "formats.voc"]
    code = "import magiccards.data\n" + "\n".join(f"import magiccards.data.{m}" for m in modules)
    code += "\nimport magiccards.errors, magiccards.files, magiccards.model_dir, magiccards.cli"
    assert _loaded_after(code) == []


def test_the_dataset_verbs_run_without_the_training_stack(tmp_path):
    code = f"""
import contextlib, io
from magiccards.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    assert main(["synth", r"{tmp_path / 'cards'}", "--count", "8", "--classes", "2", "--size", "48", "--workers", "1"]) == 0
    assert main(["pack", r"{tmp_path / 'cards'}", r"{tmp_path / 'rec'}", "--val-fraction", "0", "--workers", "1"]) == 0
    assert main(["inspect", r"{tmp_path / 'rec' / 'train.rec'}", "--samples", "4"]) == 0
"""
    assert _loaded_after(code) == []
    assert (tmp_path / "rec" / "train.sheet.png").is_file() and (tmp_path / "rec" / "train.stats.png").is_file()


def test_pack_help_loads_nothing_heavy():
    code = """
import contextlib, io
from magiccards.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main(["pack", "--help"])
    except SystemExit as e:
        assert e.code == 0
"""
    assert _loaded_after(code) == []
