"""Benchmark: detectors and classifiers on real photos of playing cards, by where they start, same wall-clock budget.

On a fixed split of a folder of real photos with VOC boxes (default ../shared/datasets/playing-cards; a seed
picks 80 % to train, the rest to score; the hyperparameters below were fixed before any run and are never
tuned on the scored part), one run reports:

  (a) from scratch (use_pretrained_model=0);
  (b) from the synthetic-card base detector shipped with the package (train/base_models/);
  (c) from GluonCV's ImageNet weights of the base network, when they are in the model store (else: absent);
  (d) the synthetic base alone, no real photo seen: class-agnostic mAP@0.5 on the scored photos.

(a)-(c) train ssd_300_mobilenet0.25 at 300 px for the same number of epochs, chosen so that run (a) takes
--budget minutes (measured on a one-epoch probe); each prints mAP@0.5 per class and overall, and a PNG of
the validation mAP per epoch is written. Targets: (b) >= 0.6 and >= 2x (a); (d) >= 0.5.

Then a classifier (mobilenet0.25 at 128 px) on the square crops of the same photos' boxes (`pack --crops`, the
same photo split), for the same budget: (e) from scratch, (f) from the synthetic-card base classifier shipped
with the package, (g) from ImageNet weights when in the store; top-1 per class and overall.

`--part two-stage`: find, then name, at the same total training time T = 2 x --budget, all from the shipped
synthetic bases, scored end to end on the full-resolution scored photos: (h) the detector alone, trained for T;
(i) a two-stage model (`magiccards combine`): a detector trained for T/2 and a crop classifier trained for T/2;
(j) the same with a one-class detector ("card") for T/2; (k) the detector of (h) with the classifier of (i),
for reference (3T/2). mAP@0.5 per class and overall; targets: (i) >= 0.75, >= 1.2x (h), no class below 0.6.
`--part detection|classification|two-stage` runs one part.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "playing-cards"
NETWORK, SIZE = "ssd_300_mobilenet0.25", 300
HP = {"network": NETWORK, "image_shape": str(SIZE), "mini_batch_size": "16", "optimizer": "adam",
      "learning_rate": "0.001", "augmentation_type": "ssd", "num_workers": "2", "seed": "3"}
CLS_NETWORK, CLS_SIZE = "mobilenet0.25", 128
CLS_HP = {"network": CLS_NETWORK, "image_shape": f"3,{CLS_SIZE},{CLS_SIZE}", "mini_batch_size": "32",
          "optimizer": "adam", "learning_rate": "0.001", "augmentation_type": "crop_color", "seed": "3"}


def train_run(data: Path, job: Path, hp: dict, pretrained: Path | None = None) -> tuple[dict, float]:
    """A `magiccards train` run; returns (its metrics, seconds)."""
    from magiccards.train.reporting import read_results

    command = [sys.executable, "-m", "magiccards.cli", "train", str(data), "--job-dir", str(job), "--fresh"]
    if pretrained:
        command += ["--pretrained", str(pretrained)]
    for k, v in hp.items():
        command += [f"--{k}", str(v)]
    started = time.perf_counter()
    env = dict(os.environ, MXNET_GLUON_REPO="http://127.0.0.1:9/")  # no download: only what is on this machine
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"training failed ({' '.join(command)}):\n{done.stderr[-2000:]}")
    history, per_class = read_results(job / "output" / "data")
    metrics = {"validation_map": _score(history[-1]), "history": history, "per_class_ap": per_class}
    return metrics, seconds


def _score(epoch: dict) -> float:
    """An epoch record's validation score: mAP (detection) or top-1 (classification)."""
    return float(epoch.get("validation_map", epoch.get("validation_accuracy", 0.0)))


def _map(metrics: dict) -> float:
    return float(metrics.get("validation_map", 0.0))


def _curve(metrics: dict) -> list[float]:
    """The validation score per epoch (mAP or top-1)."""
    return [_score(r) for r in metrics["history"]]


def _agnostic_map(base: Path, rec: Path) -> float:
    """mAP@0.5 of the base detector (one class 'card') on every box of `rec`, whatever its class."""
    import numpy as np
    from magiccards.deeplens.parity import map_of
    from magiccards.deeplens.validation import read_samples
    from magiccards.serve.predictor import Predictor

    samples = read_samples(rec, "detection", limit=100000)
    import dataclasses
    samples = [dataclasses.replace(s, objects=np.concatenate([np.zeros_like(s.objects[:, :1]), s.objects[:, 1:]], 1))
               for s in samples]
    predictor = Predictor(base, backend="mxnet")
    results = [predictor.predict([s.image])[0] for s in samples]
    return map_of(results, samples, 1) if samples else float(np.nan)


def _epochs(rec: Path, out: Path, hp: dict, budget: float) -> tuple[dict, str]:
    """Hyperparameters training for about `budget` minutes, from a two-epoch probe from scratch; and what it found.
    An epoch costs its training and its validation; what the probe took besides is start-up, paid once."""
    probe_metrics, probe = train_run(rec, out, dict(hp, epochs="2", use_pretrained_model="0"))
    last = probe_metrics["history"][-1]
    epoch = float(last["seconds"]) + float(last.get("validation_seconds", 0.0))
    startup = max(0.0, probe - 2 * epoch)
    epochs = max(2, int((budget * 60 - startup) / max(epoch, 0.5)))
    said = (f"an epoch takes {epoch:.1f} s with its validation (start-up {startup:.0f} s): each run trains {epochs} "
            f"epochs (~{budget:g} min)")
    return dict(hp, epochs=str(epochs), lr_scheduler_step=str(max(1, int(epochs * 0.7)))), said


def _run_all(rec: Path, out: Path, runs: dict) -> dict:
    results = {}
    for name, (run_hp, pretrained) in runs.items():
        metrics, seconds = train_run(rec, out / re.sub(r"\W+", "-", name).strip("-"), run_hp, pretrained)
        results[name] = (metrics, _curve(metrics), seconds)
        print(f"{name}: {_map(metrics):.3f} in {seconds / 60:.1f} min")
    return results


def _table(results: dict, classes: list[str], score: str) -> None:
    print()
    print("| start | " + " | ".join(classes) + f" | {score} | minutes |")
    print("| --- | " + " | ".join("---:" for _ in classes) + " | ---: | ---: |")
    for name, (metrics, _, seconds) in results.items():
        per = metrics.get("per_class_ap", {})
        cells = ["-" if per.get(c) is None else f"{per[c]:.2f}" for c in classes]
        print(f"| {name} | " + " | ".join(cells) + f" | **{_map(metrics):.3f}** | {seconds / 60:.1f} |")


def _plot(ax, results: dict, title: str, ylabel: str) -> None:
    for name, (_, curve, _) in results.items():
        ax.plot(range(1, len(curve) + 1), curve, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)


def _bars(ax, results: dict, title: str) -> None:
    """mAP per class of each model, side by side."""
    names = list(results)
    classes = list(results[names[0]][0]["per_class_ap"])
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        values = [results[name][0]["per_class_ap"][c] for c in classes] + [_map(results[name][0])]
        ax.bar([k + i * width for k in range(len(classes) + 1)], values, width, label=name.replace("two-stage: ", ""))
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(classes) + 1)], classes + ["mAP"])
    ax.set_ylabel("AP@0.5 on the scored photos")
    ax.set_title(title)


def detection(args, out: Path) -> tuple[dict, float | None]:
    """(a)-(d); returns the runs and (d)."""
    from magiccards.data.pack import pack
    from magiccards.train import transfer, weights
    from magiccards.train.models import weights_name

    rec, agnostic = out / "rec", out / "rec-card"
    packed = pack(args.data, rec, val_fraction=0.2, seed=0, resize=SIZE, progress=False, log=lambda line: None)
    pack(args.data, agnostic, val_fraction=0.2, seed=0, resize=SIZE, one_class="card", progress=False,
         log=lambda line: None)
    print(f"detection, {args.data}: {packed.images['train']} photos to train, {packed.images['validation']} to score "
          f"(split seed 0); classes {', '.join(packed.classes)}")
    base = transfer.shipped_base(NETWORK)
    imagenet = weights.in_folder(weights_name("detection", NETWORK), weights.gluon_store())
    hp, said = _epochs(rec, out / "probe", HP, args.budget)
    print(said)
    runs = {"(a) from scratch": (dict(hp, use_pretrained_model="0"), None)}
    if base is not None:
        runs["(b) from the synthetic base"] = (dict(hp, use_pretrained_model="1"), base)
    if imagenet is not None:
        runs["(c) from ImageNet weights"] = (dict(hp, use_pretrained_model="1"), None)
    results = _run_all(rec, out, runs)
    if imagenet is None:
        print("(c) from ImageNet weights: absent (mobilenet0.25 is not in the GluonCV model store here; "
              "`magiccards weights mobilenet0.25 --out DIR` on a machine with internet)")
    d = _agnostic_map(base, agnostic / "validation.rec") if base is not None else None
    _table(results, packed.classes, "mAP@0.5")
    if d is not None:
        print("| (d) synthetic base alone, class-agnostic | " + " | ".join("" for _ in packed.classes)
              + f" | **{d:.3f}** | 0 |")
    scratch = _map(results["(a) from scratch"][0])
    if "(b) from the synthetic base" in results:
        b = _map(results["(b) from the synthetic base"][0])
        print(f"\n(b) {b:.3f}: target >= 0.6 {'met' if b >= 0.6 else 'MISSED'}; (b)/(a) = "
              f"{b / scratch if scratch else float('inf'):.2f}x, target >= 2x {'met' if b >= 2 * scratch else 'MISSED'}")
    if d is not None:
        print(f"(d) {d:.3f}: target >= 0.5 {'met' if d >= 0.5 else 'MISSED'}")
    return results, d


def classification(args, out: Path) -> dict:
    """(e)-(g): a classifier on the crops of the boxes."""
    from magiccards.data.pack import pack
    from magiccards.train import transfer, weights

    rec = out / "crops-rec"
    packed = pack(args.data, rec, val_fraction=0.2, seed=0, resize=CLS_SIZE, crops=True, progress=False,
                  log=lambda line: None)
    print(f"\nclassification of the boxes' crops: {packed.images['train']} crops to train, "
          f"{packed.images['validation']} to score (the same photo split)")
    hp, said = _epochs(rec, out / "cls-probe", CLS_HP, args.budget)
    print(said)
    runs = {"(e) from scratch": (dict(hp, use_pretrained_model="0"), None)}
    base = transfer.shipped_base(CLS_NETWORK)
    if base is not None:
        runs["(f) from the synthetic base classifier"] = (dict(hp, use_pretrained_model="1"), base)
    if weights.in_folder(CLS_NETWORK, weights.gluon_store()) is not None:
        runs["(g) from ImageNet weights"] = (dict(hp, use_pretrained_model="1"), None)
    else:
        print("(g) from ImageNet weights: absent (mobilenet0.25 is not in the GluonCV model store here)")
    results = _run_all(rec, out / "classifier", runs)
    _table(results, packed.classes, "top-1")
    scratch = _map(results["(e) from scratch"][0])
    if "(f) from the synthetic base classifier" in results:
        f = _map(results["(f) from the synthetic base classifier"][0])
        print(f"\n(f) top-1 {f:.3f} vs (e) {scratch:.3f} from scratch: {f - scratch:+.3f}")
    return results


def two_stage(args, out: Path) -> dict:
    """(h)-(k): the detector alone against detector + crop classifier, at equal total training time."""
    from magiccards.combine import combine
    from magiccards.data.pack import pack
    from magiccards.train import transfer

    rec, one, crops, scored = out / "rec", out / "rec-card", out / "crops-rec", out / "scored-rec"
    packed = pack(args.data, rec, val_fraction=0.2, seed=0, resize=SIZE, progress=False, log=lambda line: None)
    pack(args.data, one, val_fraction=0.2, seed=0, resize=SIZE, one_class="card", progress=False, log=lambda line: None)
    pack(args.data, crops, val_fraction=0.2, seed=0, resize=CLS_SIZE, crops=True, progress=False, log=lambda line: None)
    pack(args.data, scored, val_fraction=0.2, seed=0, progress=False, log=lambda line: None)  # full resolution
    detector_base, classifier_base = transfer.shipped_base(NETWORK), transfer.shipped_base(CLS_NETWORK)
    if detector_base is None or classifier_base is None:
        raise SystemExit("the two-stage part starts from the shipped synthetic bases (train/base_models/): "
                         "`make base-detector base-classifier` first")
    print(f"\ntwo-stage, {args.data}: {packed.images['train']} photos to train, {packed.images['validation']} scored "
          f"at full resolution (split seed 0, the same photos for every stage); T = {2 * args.budget:g} min")
    half, said = _epochs(rec, out / "probe", HP, args.budget)
    print(f"detector: {said}")
    cls_half, cls_said = _epochs(crops, out / "cls-probe", CLS_HP, args.budget)
    print(f"classifier: {cls_said}")
    epochs = 2 * int(half["epochs"])
    whole = dict(half, epochs=str(epochs), lr_scheduler_step=str(max(1, int(epochs * 0.7))))
    pretrained = dict(use_pretrained_model="1")
    trained = {}
    for name, data, hp, base in (("detector T", rec, dict(whole, **pretrained), detector_base),
                                 ("detector T/2", rec, dict(half, **pretrained), detector_base),
                                 ("classifier T/2", crops, dict(cls_half, **pretrained), classifier_base),
                                 ("one-class detector T/2", one, dict(half, **pretrained), detector_base)):
        job = out / re.sub(r"\W+", "-", name).strip("-")
        metrics, seconds = train_run(data, job, hp, base)
        trained[name] = seconds
        print(f"{name}: validation {_score(metrics['history'][-1]):.3f} in {seconds / 60:.1f} min")
    (out / TRAINED).write_text(json.dumps({"classes": packed.classes, "seconds": trained}))
    return score_two_stage(out)


TRAINED = "trained.json"  # the two-stage part's classes and training seconds, for --rescore


def score_two_stage(out: Path) -> dict:
    """(h)-(k) scored on the full-resolution photos, from the jobs the two-stage part trained in `out`."""
    from magiccards.combine import combine

    saved = json.loads((out / TRAINED).read_text())
    classes, seconds_of = saved["classes"], saved["seconds"]
    trained = {name: (out / re.sub(r"\W+", "-", name).strip("-") / "model", s) for name, s in seconds_of.items()}
    scored = out / "scored-rec"
    models = {"(h) detector alone, T": ("detector T",),
              "(i) two-stage: detector T/2 + classifier T/2": ("detector T/2", "classifier T/2"),
              "(j) two-stage: one-class detector T/2 + classifier T/2": ("one-class detector T/2", "classifier T/2"),
              "(k) two-stage: detector T + classifier T/2 (3T/2)": ("detector T", "classifier T/2")}
    results = {}
    for name, parts in models.items():
        model = trained[parts[0]][0]
        if len(parts) == 2:
            model = out / re.sub(r"\W+", "-", name).strip("-")
            shutil.rmtree(model, ignore_errors=True)
            combine(trained[parts[0]][0], trained[parts[1]][0], model, log=lambda line: None)
        started = time.perf_counter()
        per_class, overall = photo_map(model, scored / "validation.rec", len(classes))
        seconds = sum(trained[p][1] for p in parts)
        results[name] = ({"validation_map": overall, "per_class_ap": dict(zip(classes, per_class))}, [], seconds)
        print(f"{name}: mAP@0.5 {overall:.3f} (scored in {time.perf_counter() - started:.0f} s)")
    _table(results, classes, "mAP@0.5")
    alone, ours = (_map(results[k][0]) for k in ("(h) detector alone, T", "(i) two-stage: detector T/2 + classifier T/2"))
    lowest = min(results["(i) two-stage: detector T/2 + classifier T/2"][0]["per_class_ap"].values())
    print(f"\n(i) {ours:.3f}: target >= 0.75 {'met' if ours >= 0.75 else 'MISSED'}; (i)/(h) = "
          f"{ours / alone if alone else float('inf'):.2f}x, target >= 1.2x {'met' if ours >= 1.2 * alone else 'MISSED'}; "
          f"lowest class {lowest:.2f}, target >= 0.6 {'met' if lowest >= 0.6 else 'MISSED'}")
    return results


def photo_map(model: Path, rec: Path, classes: int) -> tuple[list[float], float]:
    """VOC07 mAP@0.5 per class and overall of `model` (any kind) on every photo of `rec`."""
    from magiccards.deeplens.parity import map_per_class
    from magiccards.deeplens.validation import read_samples
    from magiccards.serve.loader import load

    samples = read_samples(rec, "detection", limit=100000)
    with load(model, backend="mxnet") as predictor:
        return map_per_class([predictor.predict([s.image])[0] for s in samples], samples, classes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"photos with VOC boxes (default {DEFAULT_DATA})")
    parser.add_argument("--budget", type=float, default=10.0, help="minutes of training per run (default 10)")
    parser.add_argument("--part", choices=("all", "detection", "classification", "two-stage"), default="all")
    parser.add_argument("--out", type=Path, default=REPO / "bench-output" / "real")
    parser.add_argument("--rescore", action="store_true",
                        help="--part two-stage: score the models an earlier run trained in --out again, no training")
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"no data at {args.data}: pass --data FOLDER (photos with a VOC .xml beside each, e.g. "
                         "../shared/datasets/playing-cards, or tests/data/files/playing-cards for a small run)")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = args.out / args.part if args.part != "all" else args.out
    if args.rescore:
        if args.part != "two-stage" or not (out / TRAINED).is_file():
            raise SystemExit(f"--rescore scores an earlier `--part two-stage` run again: no {out / TRAINED}")
        results = score_two_stage(out)
        fig, ax = plt.subplots(figsize=(9, 4))
        _bars(ax, results, f"find, then name: AP@0.5 per class on {args.data.name}")
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        fig.savefig(out / "curves.png", dpi=100)
        print(f"chart: {out / 'curves.png'}")
        return 0
    shutil.rmtree(out, ignore_errors=True)
    parts = [p for p in ("detection", "classification", "two-stage") if args.part in ("all", p)]
    fig, axes = plt.subplots(1, len(parts), figsize=(7 * len(parts), 4), squeeze=False)
    for ax, part in zip(axes[0], parts):
        if part == "detection":
            results, d = detection(args, out)
            _plot(ax, results, f"detector: {NETWORK} {SIZE} px on {args.data.name}", "validation mAP@0.5")
            if d is not None:
                ax.axhline(d, linestyle=":", color="grey", label="(d) synthetic base alone (class-agnostic)")
        elif part == "classification":
            results = classification(args, out)
            _plot(ax, results, f"classifier: {CLS_NETWORK} {CLS_SIZE} px on the crops", "validation top-1")
        else:
            results = two_stage(args, out)
            _bars(ax, results, f"find, then name: mAP@0.5 per class on {args.data.name}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=100)
    print(f"curves: {out / 'curves.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
