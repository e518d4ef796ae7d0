"""Stratified train/validation split."""
from __future__ import annotations

import random
from collections import Counter, defaultdict

from .samples import Sample


def stratum(sample: Sample, class_counts: Counter) -> int:
    """The class a sample is balanced by: its label, or the rarest class among its boxes."""
    if sample.label is not None:
        return sample.label
    return min((b.cls for b in sample.boxes), key=lambda c: (class_counts[c], c))


def split(samples: list[Sample], val_fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Shuffle and split so each class keeps about `val_fraction` of its images in validation."""
    rng = random.Random(seed)
    counts = Counter(b.cls for s in samples if s.boxes for b in s.boxes)
    groups: dict[int, list[Sample]] = defaultdict(list)
    for s in samples:
        groups[stratum(s, counts)].append(s)
    train, val = [], []
    for key in sorted(groups):
        group = groups[key]
        rng.shuffle(group)
        n_val = round(len(group) * val_fraction)
        if val_fraction > 0 and n_val == 0 and len(group) >= 2:
            n_val = 1
        val.extend(group[:n_val])
        train.extend(group[n_val:])
    rng.shuffle(train)
    rng.shuffle(val)
    return train, val
