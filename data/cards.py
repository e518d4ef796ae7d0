"""Procedural Magic-like card faces, one fixed design per class name.

A class's look (border, frame colour, title, mana symbols, art, type line, rules text, power and
toughness) is derived from a hash of its name only, so the same class renders the same in every
dataset and every seed: a model trained on one synthetic set can be tested on another.
"""
from __future__ import annotations

import functools
import hashlib

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

CARD_W, CARD_H = 240, 336  # 63 x 88 mm at the same aspect ratio
CORNER_RADIUS = 11

ADJECTIVES = ["ember", "frost", "storm", "shadow", "verdant", "gilded", "hollow", "ancient", "radiant", "feral",
              "arcane", "iron", "crimson", "silent", "wild", "lunar", "solar", "abyssal", "thorned", "crystal"]
NOUNS = ["drake", "golem", "sphinx", "wurm", "phoenix", "knight", "hydra", "elemental", "angel", "goblin",
         "serpent", "titan", "wraith", "oracle", "behemoth", "griffin", "shaman", "colossus", "imp", "leviathan"]
TYPES = ["Creature", "Creature", "Creature", "Sorcery", "Instant", "Artifact", "Enchantment"]
WORDS = ("target creature gets draw a card until end of turn flying trample haste each opponent loses life "
         "whenever enters the battlefield destroy return to its owner's hand sacrifice counter spell tap untap "
         "mana of any color exile graveyard library search your").split()
# White, blue, black, red, green, multicolour gold, artifact, land
FRAME_COLOURS = [(232, 226, 200), (40, 110, 190), (55, 50, 55), (200, 60, 40), (40, 140, 70), (215, 175, 70),
                 (150, 155, 165), (150, 110, 70)]
BORDERS = [(12, 12, 12)] * 5 + [(240, 240, 240), (190, 190, 195), (200, 160, 60)]


def class_names(n: int) -> list[str]:
    """`n` distinct, readable class names such as 'ember-drake' (the same list for the same n)."""
    names = [f"{a}-{b}" for b in NOUNS for a in ADJECTIVES]
    order = np.random.default_rng(7).permutation(len(names))
    if n > len(names):
        return [names[i] for i in order] + [f"card-{i:05d}" for i in range(len(names), n)]
    return [names[i] for i in order[:n]]


def _seed(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


@functools.lru_cache(maxsize=512)
def render(name: str) -> np.ndarray:
    """The card face of class `name` as an RGBA uint8 array of CARD_H x CARD_W (rounded corners transparent)."""
    rng = np.random.default_rng(_seed(name))
    frame = np.array(FRAME_COLOURS[rng.integers(len(FRAME_COLOURS))]) + rng.integers(-25, 26, 3)
    frame = tuple(int(v) for v in np.clip(frame, 0, 255))
    border = BORDERS[rng.integers(len(BORDERS))]
    card = Image.new("RGB", (CARD_W, CARD_H), border)
    d = ImageDraw.Draw(card)
    d.rounded_rectangle((9, 9, CARD_W - 10, CARD_H - 10), radius=6, fill=frame)
    _texture(card, rng, (9, 9, CARD_W - 10, CARD_H - 10))
    light = _mix(frame, (255, 255, 255), 0.55)
    # title bar with name and mana cost
    d.rounded_rectangle((16, 16, CARD_W - 17, 40), radius=8, fill=light, outline=(20, 20, 20))
    title = " ".join(w.capitalize() for w in name.split("-"))
    d.text((23, 20), title, fill=(10, 10, 10), font=_font(14))
    _mana(d, rng, frame)
    # art box
    art = _art(rng, (CARD_W - 36, 140))
    card.paste(art, (18, 45))
    d.rectangle((18, 45, CARD_W - 19, 185), outline=(20, 20, 20), width=2)
    # type line with set symbol
    kind = TYPES[rng.integers(len(TYPES))]
    d.rounded_rectangle((16, 190, CARD_W - 17, 212), radius=7, fill=light, outline=(20, 20, 20))
    subtype = name.split("-")[-1].capitalize()
    d.text((23, 194), f"{kind} - {subtype}" if kind == "Creature" else kind, fill=(10, 10, 10), font=_font(12))
    rarity = [(20, 20, 20), (170, 170, 180), (210, 170, 60), (230, 100, 30)][rng.integers(4)]
    cx = CARD_W - 30
    d.polygon([(cx, 194), (cx + 8, 201), (cx, 208), (cx - 8, 201)], fill=rarity, outline=(0, 0, 0))
    # rules text box
    d.rectangle((20, 217, CARD_W - 21, 300), fill=_mix(frame, (245, 238, 220), 0.8), outline=(20, 20, 20))
    for row in range(int(rng.integers(2, 5))):
        words = " ".join(rng.choice(WORDS, size=int(rng.integers(3, 6))))
        d.text((26, 222 + row * 17), words, fill=(30, 30, 30), font=_font(11))
    if kind == "Creature":
        d.rounded_rectangle((CARD_W - 66, 296, CARD_W - 20, 318), radius=6, fill=light, outline=(20, 20, 20))
        d.text((CARD_W - 56, 299), f"{rng.integers(0, 9)}/{rng.integers(1, 9)}", fill=(10, 10, 10), font=_font(14))
    d.text((20, CARD_H - 24), f"{rng.integers(1, 300):03d}/300  MC", fill=_mix(border, (128, 128, 128), 0.6),
           font=_font(9))
    rgba = np.dstack([np.asarray(card), _corner_mask()])
    return rgba


def _mix(a, b, t: float) -> tuple[int, int, int]:
    return tuple(int(round(x * (1 - t) + y * t)) for x, y in zip(a, b))


def _texture(card: Image.Image, rng: np.random.Generator, box) -> None:
    x0, y0, x1, y1 = box
    region = np.asarray(card.crop(box)).astype(np.float32)
    noise = rng.normal(0, 1, (max(2, (y1 - y0) // 12), max(2, (x1 - x0) // 12)))
    noise = np.asarray(Image.fromarray(noise.astype(np.float32), "F").resize((x1 - x0, y1 - y0), Image.BICUBIC))
    region *= (1 + 0.08 * noise)[..., None]
    card.paste(Image.fromarray(np.clip(region, 0, 255).astype(np.uint8)), (x0, y0))


def _mana(d: ImageDraw.ImageDraw, rng: np.random.Generator, frame) -> None:
    symbols = int(rng.integers(1, 5))
    x = CARD_W - 30
    for i in range(symbols):
        colour = FRAME_COLOURS[rng.integers(6)] if i else (200, 200, 200)
        d.ellipse((x - 8, 20, x + 8, 36), fill=colour, outline=(0, 0, 0))
        if i == 0:
            d.text((x - 4, 21), str(int(rng.integers(1, 8))), fill=(0, 0, 0), font=_font(12))
        x -= 19


def _art(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A small procedural painting: sky gradient, ground, then a few shapes typical of the class."""
    w, h = size
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, h)[:, None, None]
    sky = (top * (1 - t) + bottom * t) * np.ones((1, w, 1))
    art = Image.fromarray(sky.astype(np.uint8))
    d = ImageDraw.Draw(art)
    horizon = int(h * rng.uniform(0.45, 0.8))
    ground = tuple(int(v) for v in rng.integers(0, 200, 3))
    pts = [(0, horizon)] + [(x, horizon + int(rng.integers(-12, 12))) for x in range(0, w + 20, 20)] + [(w, h), (0, h)]
    d.polygon(pts, fill=ground)
    for _ in range(int(rng.integers(3, 7))):
        kind = rng.integers(5)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        cx, cy, r = int(rng.integers(0, w)), int(rng.integers(0, h)), int(rng.integers(8, 40))
        if kind == 0:  # mountain / spire
            d.polygon([(cx - r, horizon), (cx, max(0, horizon - 3 * r)), (cx + r, horizon)], fill=colour)
        elif kind == 1:  # sun, moon, orb
            d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
        elif kind == 2:  # creature: body, head, eyes
            d.ellipse((cx - r, cy - r // 2, cx + r, cy + r // 2), fill=colour)
            d.ellipse((cx + r - 6, cy - r // 2 - 10, cx + r + 12, cy - r // 2 + 8), fill=colour)
            d.ellipse((cx + r + 2, cy - r // 2 - 4, cx + r + 6, cy - r // 2), fill=(255, 255, 255))
        elif kind == 3:  # crystals
            for k in range(3):
                x = cx + k * 9
                d.polygon([(x - 5, cy + r), (x, cy - r + k * 5), (x + 5, cy + r)], fill=colour, outline=(0, 0, 0))
        else:  # rays / waves
            for k in range(4):
                y = cy + k * 6
                d.line([(x, y + int(5 * np.sin(x / 7 + k))) for x in range(0, w, 6)], fill=colour, width=2)
    return art.filter(ImageFilter.SMOOTH)


@functools.lru_cache(maxsize=1)
def _corner_mask() -> np.ndarray:
    mask = Image.new("L", (CARD_W, CARD_H), 0)
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, CARD_W - 1, CARD_H - 1), radius=CORNER_RADIUS, fill=255)
    return np.asarray(mask)
