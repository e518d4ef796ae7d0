"""The crop rule: the square of a photo that names one card, shared by `pack --crops` and two-stage serving.

A crop is the square centred on a box, its side the box's longer side plus CROP_MARGIN of it on each side,
cut from the full-resolution photo; where the square leaves the photo, the photo's edge pixels are repeated.
`pack --crops` writes these squares for a classifier to learn from; a two-stage model cuts the very same
square around each box its detector finds before the classifier names it, so that the classifier sees at
serving time exactly what it learnt from. `RULE` names the rule in the model cards of both, so that a
classifier trained on another rule is refused when a two-stage model is put together.
"""
from __future__ import annotations

import numpy as np

CROP_MARGIN = 0.1  # a crop is the square around its box, this share of the box's longer side wider on each side
RULE = {"name": "square-around-box", "margin": CROP_MARGIN, "outside": "edge pixels repeated"}
CROP_RULE_FILE = "crop-rule.json"  # written by `pack --crops` beside classes.txt
MIN_SIDE = 2  # a box less than this many pixels across gives no crop


def square_bounds(box: tuple[float, float, float, float]) -> tuple[int, int, int] | None:
    """(left, top, side) in pixels of the crop around `box` (xmin, ymin, xmax, ymax in pixels), or None when
    the box is under MIN_SIDE pixels across."""
    x0, y0, x1, y1 = box
    if not min(x1 - x0, y1 - y0) >= MIN_SIDE:  # also catches NaN
        return None
    side = max(x1 - x0, y1 - y0) * (1 + 2 * CROP_MARGIN)
    left, top = round((x0 + x1 - side) / 2), round((y0 + y1 - side) / 2)
    return left, top, round(side)


def square_crop(rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray | None:
    """The crop of HWC `rgb` around `box` (pixels): a side x side array, or None for a box under MIN_SIDE."""
    bounds = square_bounds(box)
    if bounds is None:
        return None
    left, top, side = bounds
    height, width = rgb.shape[:2]
    pad = [max(0, -top), max(0, top + side - height), max(0, -left), max(0, left + side - width)]
    if any(pad):
        if max(pad) > 4 * side:  # a box far outside the photo: nothing of the photo in its square
            return None
        import cv2  # here: the rule itself (RULE) is read by model cards, without OpenCV

        rgb = cv2.copyMakeBorder(np.ascontiguousarray(rgb), *pad, cv2.BORDER_REPLICATE)
        top, left = top + pad[0], left + pad[2]
    return np.ascontiguousarray(rgb[top:top + side, left:left + side])


def crop_normalised(rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray | None:
    """`square_crop` of a box given as fractions of the photo (a detector's answer)."""
    height, width = rgb.shape[:2]
    x0, y0, x1, y1 = box
    return square_crop(rgb, (x0 * width, y0 * height, x1 * width, y1 * height))
