"""The network's input from an RGB image, exactly as the job's validation prepared it.

Classification (train/classification.py `eval_transform`): the built-in `resize` hyperparameter's
shorter-side resize when it was set, the shorter side resized to min(H, W), a centre crop of W x H.
Detection (GluonCV's SSDDefaultValTransform): a plain resize to W x H (cubic to enlarge, area to
shrink), so a box in input pixels divided by W and H is a box normalised to the original image.
Then pixel / 255, minus the mean, over the std (the model card's), as CHW float32. OpenCV's resize
with MXNet's interpolation codes (they are OpenCV's own): no MXNet here, the edge runtimes share it.
"""
from __future__ import annotations

import cv2
import numpy as np

LINEAR, CUBIC, AREA = cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA


def auto_interpolation(old_h: int, old_w: int, new_h: int, new_w: int) -> int:
    """MXNet's interp=9: cubic to enlarge, area to shrink, bilinear otherwise."""
    if new_h > old_h and new_w > old_w:
        return CUBIC
    if new_h < old_h and new_w < old_w:
        return AREA
    return LINEAR


def resize_shorter(image: np.ndarray, size: int, interpolation: int = LINEAR) -> np.ndarray:
    """Resize so that the shorter side is `size` pixels, keeping the aspect ratio (gluon's Resize with
    keep_ratio)."""
    h, w = image.shape[:2]
    if h < w:
        new_h, new_w = size, int(w * size / h)
    else:
        new_h, new_w = int(h * size / w), size
    return cv2.resize(image, (new_w, new_h), interpolation=interpolation)


def center_crop(image: np.ndarray, width: int, height: int, interpolation: int = LINEAR) -> np.ndarray:
    """mx.image.center_crop: the centred crop of (width, height), scaled down to fit and resized back."""
    h, w = image.shape[:2]
    crop_w, crop_h = float(width), float(height)
    if h < crop_h:
        crop_w, crop_h = crop_w * h / crop_h, h
    if w < crop_w:
        crop_w, crop_h = w, crop_h * w / crop_w
    crop_w, crop_h = int(crop_w), int(crop_h)
    x0, y0 = int((w - crop_w) / 2), int((h - crop_h) / 2)
    out = image[y0:y0 + crop_h, x0:x0 + crop_w]
    if (crop_w, crop_h) != (width, height):
        out = cv2.resize(out, (width, height), interpolation=interpolation)
    return out


def network_input(image: np.ndarray, task: str, input_shape: tuple[int, int, int], mean, std,
                  resize: int | None = None) -> np.ndarray:
    """CHW float32 input of HWC uint8 RGB `image` for a network of `input_shape` (C, H, W)."""
    _, height, width = input_shape
    if task == "classification":
        if resize:
            image = resize_shorter(image, resize)
        image = center_crop(resize_shorter(image, min(height, width)), width, height)
    else:
        h, w = image.shape[:2]
        image = cv2.resize(image, (width, height), interpolation=auto_interpolation(h, w, height, width))
    pixels = image.astype(np.float32) / 255.0
    pixels = (pixels - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))
