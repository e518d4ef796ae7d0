"""Classification folders: `ROOT/<class name>/<image>`; the folder name is the class."""
from __future__ import annotations

from pathlib import Path

from ..samples import Problems, Sample, is_image_file
from .common import cleaned_name, is_broken_link


def looks_like(root: Path) -> bool:
    return root.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir())


def read(root: Path, classes: list[str] | None, problems: Problems,
         exclude: Path | None = None) -> tuple[list[Sample], list[str]]:
    """One sample per image file; empty class folders are reported and left out of the class list.

    Files other than images at the top (a README, a previous pack's output) are ignored; `exclude`
    (the output folder, when it lies inside `root`) is not read.
    """
    exclude = exclude.resolve() if exclude is not None else None
    exclude = exclude if exclude is not None and root.resolve() in exclude.parents else None  # strictly inside
    inside = lambda p: exclude is not None and (p.resolve() == exclude or exclude in p.resolve().parents)  # noqa: E731
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and not inside(p))
    for p in sorted(root.iterdir()):
        if is_image_file(p):
            problems.add("outside class folder", p, "images must sit in a folder named after their class; skipped", images=1)
    found: dict[str, list[Path]] = {}
    reported: set = set()
    for folder in folders:
        files = found.setdefault(cleaned_name(folder.name, folder, problems, reported), [])
        for p in sorted(folder.rglob("*")):
            if p.is_dir() or p.name.startswith(".") or inside(p):
                continue
            if is_broken_link(p, problems):
                continue
            if is_image_file(p):
                files.append(p)
            else:
                problems.add("not an image", p, f"suffix {p.suffix or '(none)'} is not an image format; skipped")
    if classes is None:
        for name, files in found.items():
            if not files:
                problems.add("empty class", root / name, "the folder holds no image; class left out")
        classes = [name for name, files in found.items() if files]
    else:
        for name in classes:
            if not found.get(name):
                problems.add("empty class", root / name, "no image for this class; its index stays reserved")
        for name in found:
            if name not in classes:
                problems.add("unknown class", root / name, f"folder is not one of the given classes {classes}; skipped",
                             images=len(found[name]))
    samples = [Sample(path=p.resolve(), rel="", label=i) for i, name in enumerate(classes) for p in found.get(name, [])]
    return samples, classes
