"""The charts of `magiccards inspect`: class balance, image sizes and, for detection, box sizes and places."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from magiccards.files import atomic_path


def draw_stats(path: Path, per_class: dict[str, int], unit: str, sizes: np.ndarray,
               boxes: np.ndarray | None = None) -> None:
    """One PNG: `unit` per class, image width x height, and (given (N, 4) normalised boxes) box area and centres."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if boxes is None else 4
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.8 + 0.12 * max(0, len(per_class) - 12)))
    names, counts = list(per_class), list(per_class.values())
    ax = axes[0]
    ax.barh(range(len(names)), counts, color="tab:blue")
    ax.set_yticks(range(len(names)), names, fontsize=8 if len(names) <= 30 else 5)
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.set_title(f"{unit} per class")
    ax = axes[1]
    unique, repeats = np.unique(sizes, axis=0, return_counts=True)
    ax.scatter(unique[:, 0], unique[:, 1], s=12 + 60 * repeats / repeats.max(), alpha=0.6, color="tab:green")
    ax.set_xlabel("width (px)")
    ax.set_ylabel("height (px)")
    ax.set_title(f"image sizes ({len(sizes)} images)")
    if boxes is not None:
        area = np.clip((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-4, 1)
        ax = axes[2]
        ax.hist(area, bins=np.logspace(-4, 0, 33), color="tab:orange")
        ax.set_xscale("log")
        ax.set_xlabel("box area / image area")
        ax.set_title(f"box sizes ({len(boxes)} boxes)")
        ax = axes[3]
        ax.hist2d((boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2, bins=16, range=[[0, 1], [0, 1]],
                  cmap="magma")
        ax.set_xlim(0, 1)
        ax.set_ylim(1, 0)  # image coordinates: y grows downwards
        ax.set_aspect("equal")
        ax.set_title("box centres")
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)
