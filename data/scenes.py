"""Photo-like scenes: backgrounds, perspective placement of cards, and camera/lighting effects.

All functions take a numpy Generator so a scene is a pure function of its seed.
Images are float32 HxWx3 in [0, 255] until `to_uint8`.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

# backgrounds

def _smooth_noise(rng, h, w, cells, channels=1) -> np.ndarray:
    small = rng.random((max(2, h // cells), max(2, w // cells), channels)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).reshape(h, w, channels)


def background(rng: np.random.Generator, h: int, w: int, photos: list[Path] | None = None) -> np.ndarray:
    """A random backdrop: a real photo (when given), noise, gradient, wood, cloth, checker or clouds."""
    kinds = ["noise", "gradient", "wood", "cloth", "checker", "clouds"] + (["photo"] * 4 if photos else [])
    kind = kinds[rng.integers(len(kinds))]
    if kind == "photo":
        img = _photo(rng, photos[rng.integers(len(photos))], h, w)
        if img is not None:
            return img
        kind = "clouds"
    c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    if kind == "noise":
        return np.clip(c1 + rng.normal(0, rng.uniform(10, 60), (h, w, 3)), 0, 255).astype(np.float32)
    if kind == "gradient":
        angle = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = (xx * np.cos(angle) + yy * np.sin(angle))
        t = ((t - t.min()) / max(1e-6, np.ptp(t)))[..., None]
        return (c1 * (1 - t) + c2 * t).astype(np.float32)
    if kind == "wood":
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        warp = _smooth_noise(rng, h, w, 64)[..., 0] * rng.uniform(10, 40)
        t = (0.5 + 0.5 * np.sin((yy + warp) / rng.uniform(3, 12)))[..., None]
        base = np.array([rng.uniform(90, 170), rng.uniform(55, 110), rng.uniform(20, 60)])
        return (base * (0.7 + 0.4 * t)).astype(np.float32)
    if kind == "cloth":
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        period = rng.uniform(2, 6)
        weave = (0.5 + 0.25 * np.sin(xx / period) + 0.25 * np.sin(yy / period))[..., None]
        return (c1 * (0.75 + 0.35 * weave) + rng.normal(0, 6, (h, w, 3))).clip(0, 255).astype(np.float32)
    if kind == "checker":
        cell = int(rng.integers(8, 64))
        yy, xx = np.mgrid[0:h, 0:w]
        t = (((xx // cell) + (yy // cell)) % 2)[..., None].astype(np.float32)
        return (c1 * (1 - t) + c2 * t).astype(np.float32)
    t = sum(_smooth_noise(rng, h, w, cells) * wgt for cells, wgt in ((128, 0.5), (32, 0.3), (8, 0.2)))
    return (c1 * (1 - t) + c2 * t).astype(np.float32)


def _photo(rng, path: Path, h: int, w: int) -> np.ndarray | None:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        return None
    ih, iw = img.shape[:2]
    scale = max(h / ih, w / iw) * rng.uniform(1.0, 1.6)
    img = cv2.resize(img, (max(w, int(iw * scale + 0.5)), max(h, int(ih * scale + 0.5))), interpolation=cv2.INTER_AREA)
    y, x = rng.integers(0, img.shape[0] - h + 1), rng.integers(0, img.shape[1] - w + 1)
    crop = img[y:y + h, x:x + w, ::-1].astype(np.float32)
    return crop[:, ::-1] if rng.random() < 0.5 else crop


# placing cards

def card_quad(rng: np.random.Generator, card_w: int, card_h: int, center: tuple[float, float], height: float,
              rotation_deg: float, perspective: float) -> np.ndarray:
    """Corners (4x2, clockwise from top-left) of a card of `height` pixels, rotated and tilted."""
    scale = height / card_h
    w, h = card_w * scale, card_h * scale
    corners = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]], dtype=np.float32)
    corners += rng.uniform(-perspective, perspective, corners.shape).astype(np.float32) * np.array([w, h], np.float32)
    a = np.deg2rad(rotation_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]], dtype=np.float32)
    return corners @ rot.T + np.asarray(center, dtype=np.float32)


def paste(canvas: np.ndarray, card_rgba: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """Warp the card onto `quad` of the canvas (in place); return the card's coverage mask (float 0..1)."""
    h, w = canvas.shape[:2]
    ch, cw = card_rgba.shape[:2]
    src = np.array([[0, 0], [cw, 0], [cw, ch], [0, ch]], dtype=np.float32)
    m = cv2.getPerspectiveTransform(src, quad.astype(np.float32))
    warped = cv2.warpPerspective(card_rgba, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    alpha = warped[..., 3:4].astype(np.float32) / 255.0
    canvas *= 1 - alpha
    canvas += warped[..., :3].astype(np.float32) * alpha
    return alpha[..., 0]


def quad_area(quad: np.ndarray) -> float:
    x, y = quad[:, 0], quad[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


# effects

def occluder(rng: np.random.Generator, canvas: np.ndarray, quad: np.ndarray, reach: float) -> np.ndarray:
    """Paint a finger-, thumb- or object-like blob over the edge of the card; return its mask."""
    h, w = canvas.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    edge = rng.integers(4)
    a, b = quad[edge], quad[(edge + 1) % 4]
    t = rng.uniform(0.2, 0.8)
    point = a + (b - a) * t
    centre = quad.mean(axis=0)
    inward = (centre - point) / max(1e-6, np.linalg.norm(centre - point))
    size = np.linalg.norm(quad[0] - quad[2]) * reach
    tip = point + inward * size
    outside = point - inward * size * 2
    width = max(3, int(size * rng.uniform(0.35, 0.6)))
    cv2.line(mask, tuple(int(v) for v in outside), tuple(int(v) for v in tip), 255, thickness=width)
    cv2.circle(mask, tuple(int(v) for v in tip), width // 2, 255, -1)
    skin = rng.random() < 0.6
    colour = np.array([rng.uniform(150, 235), rng.uniform(100, 180), rng.uniform(80, 150)]) if skin \
        else rng.uniform(0, 255, 3)
    m = cv2.GaussianBlur(mask, (0, 0), 1.0).astype(np.float32)[..., None] / 255.0
    shade = 0.85 + 0.3 * _smooth_noise(rng, h, w, 16)
    canvas *= 1 - m
    canvas += colour * shade * m
    return m[..., 0]


def lighting(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Uneven light: a smooth gain field, a colour cast, and a global brightness/contrast change."""
    h, w = img.shape[:2]
    gain = rng.uniform(0.55, 1.0) + rng.uniform(0.1, 0.6) * _smooth_noise(rng, h, w, max(h, w) // 2)
    cast = rng.uniform(0.88, 1.12, 3)
    contrast = rng.uniform(0.75, 1.2)
    out = (img * gain * cast - 128) * contrast + 128 + rng.uniform(-20, 20)
    return out.astype(np.float32)


def glare(rng: np.random.Generator, img: np.ndarray, around: np.ndarray) -> np.ndarray:
    """A soft specular highlight somewhere over `around` (a quad)."""
    h, w = img.shape[:2]
    centre = around.mean(axis=0) + rng.uniform(-0.3, 0.3, 2) * np.ptp(around, axis=0)
    r = np.ptp(around, axis=0).mean() * rng.uniform(0.1, 0.35)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    stretch = rng.uniform(0.3, 1.0)
    d2 = ((xx - centre[0]) ** 2) * stretch + ((yy - centre[1]) ** 2) / stretch
    blob = np.exp(-d2 / (2 * r * r))[..., None]
    return img + blob * rng.uniform(90, 230)


def blur(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Defocus (Gaussian) or motion blur."""
    if rng.random() < 0.5:
        return cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.8))
    n = int(rng.integers(3, 9))
    kernel = np.zeros((n, n), np.float32)
    kernel[n // 2, :] = 1.0 / n
    rot = cv2.getRotationMatrix2D((n / 2 - 0.5, n / 2 - 0.5), rng.uniform(0, 180), 1.0)
    kernel = cv2.warpAffine(kernel, rot, (n, n))
    return cv2.filter2D(img, -1, kernel / max(kernel.sum(), 1e-6))


def sensor_noise(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    return img + rng.normal(0, rng.uniform(1, 7), img.shape).astype(np.float32)


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(img, 0, 255).astype(np.uint8)


# the realism a photo of a real card has and a clean scan lacks (drawn on card images, `synth --faces`)

def bend(rng: np.random.Generator, card_rgba: np.ndarray) -> np.ndarray:
    """The card slightly bowed along its long or short axis: its edges curve and its shading follows the
    curvature. The result is larger by a transparent margin; the card's own pixels stay where it bends."""
    h, w = card_rgba.shape[:2]
    margin = int(np.ceil(0.04 * max(h, w))) + 1
    amount = rng.uniform(0.01, 0.035) * max(h, w) * (1 if rng.random() < 0.5 else -1)
    yy, xx = np.mgrid[0:h + 2 * margin, 0:w + 2 * margin].astype(np.float32)
    xx -= margin
    yy -= margin
    if rng.random() < 0.5:  # bowed along the long side: the long edges curve sideways
        t = np.sin(np.pi * np.clip(yy / h, 0, 1))
        map_x, map_y = xx - amount * t, yy
        across = np.clip(map_x / w, 0, 1)
    else:
        t = np.sin(np.pi * np.clip(xx / w, 0, 1))
        map_x, map_y = xx, yy - amount * t
        across = np.clip(map_y / h, 0, 1)
    out = cv2.remap(card_rgba, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    shade = 1 + rng.uniform(0.04, 0.14) * np.cos(np.pi * across) * (1 if rng.random() < 0.5 else -1)
    out = out.astype(np.float32)
    out[..., :3] *= shade[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


def sheen(rng: np.random.Generator, card_rgba: np.ndarray, sleeve: bool) -> np.ndarray:
    """Specular light on the card's surface: a soft band (a card's finish), or, in a plastic sleeve, a haze
    over the whole face and a sharp, bright streak."""
    h, w = card_rgba.shape[:2]
    out = card_rgba.astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    along = (xx - w / 2) * np.cos(angle) + (yy - h / 2) * np.sin(angle)
    centre = rng.uniform(-0.4, 0.4) * max(h, w)
    if sleeve:
        out[..., :3] = out[..., :3] * (1 - (haze := rng.uniform(0.04, 0.16))) + 255 * haze
        width = rng.uniform(0.01, 0.05) * max(h, w)
        band = np.exp(-((along - centre) / width) ** 2) * rng.uniform(120, 230)
    else:
        width = rng.uniform(0.1, 0.35) * max(h, w)
        band = np.exp(-((along - centre) / width) ** 2) * rng.uniform(25, 80)
    out[..., :3] += band[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


def cast_shadow(rng: np.random.Generator, canvas: np.ndarray, card_rgba: np.ndarray, quad: np.ndarray) -> None:
    """The card's own soft shadow on the table, offset from where it will lie (in place; before the card)."""
    h, w = canvas.shape[:2]
    ch, cw = card_rgba.shape[:2]
    side = float(np.linalg.norm(quad[0] - quad[1]))
    offset = rng.uniform(0.01, 0.06, 2) * side * np.where(rng.random(2) < 0.5, -1, 1)
    src = np.array([[0, 0], [cw, 0], [cw, ch], [0, ch]], dtype=np.float32)
    m = cv2.getPerspectiveTransform(src, (quad + offset).astype(np.float32))
    alpha = cv2.warpPerspective(card_rgba[..., 3], m, (w, h), flags=cv2.INTER_LINEAR).astype(np.float32) / 255
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(0.8, side * rng.uniform(0.01, 0.04)))
    canvas *= (1 - rng.uniform(0.25, 0.6) * alpha)[..., None]


def white_balance(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """A camera's white balance off towards warm (tungsten) or cool (shade) light."""
    t = rng.uniform(-0.15, 0.15)
    return img * np.array([1 + t, 1 + 0.2 * t, 1 - t], np.float32)
