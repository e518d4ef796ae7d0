"""Procedural card faces, one fixed design per class name.

- a name such as `queen-of-hearts` or `9-of-clubs` renders a playing card: white face, rank and suit in
  two corners, pips or a court figure in the middle;
- `back-N` renders a card back (one of many lattice and border patterns);
- any other name renders a Magic-like face: its look (border, frame colour, title, mana symbols, art,
  type line, rules text, power and toughness) is derived from a hash of its name only.

The same class renders the same in every dataset and every seed: a model trained on one synthetic set
can be tested on another.
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


RANKS = ("ace", "2", "3", "4", "5", "6", "7", "8", "9", "10", "jack", "queen", "king")
RANK_ALIASES = {"two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8",
                "nine": "9", "ten": "10"}
SUITS = ("spades", "hearts", "diamonds", "clubs")


def playing_card_names() -> list[str]:
    """The 52 faces of a French deck, e.g. 'ace-of-spades', '10-of-hearts'."""
    return [f"{r}-of-{s}" for s in SUITS for r in RANKS]


def base_classes(magic: int = 40, backs: int = 8) -> list[str]:
    """The designs the shipped synthetic-card base detector is trained on (all packed as one class 'card'):
    the 52 playing-card faces, `backs` card backs and `magic` Magic-like faces."""
    return playing_card_names() + [f"back-{i}" for i in range(1, backs + 1)] + class_names(magic)


@functools.lru_cache(maxsize=512)
def render(name: str) -> np.ndarray:
    """The card face of class `name` as an RGBA uint8 array of CARD_H x CARD_W (rounded corners transparent)."""
    rank, _, suit = name.lower().partition("-of-")
    rank = RANK_ALIASES.get(rank, rank)
    if suit in SUITS and rank in RANKS:
        return _playing(rank, suit)
    if name.lower().startswith("back-"):
        return _back(name)
    return _magic(name)


def _suit(d: ImageDraw.ImageDraw, suit: str, cx: float, cy: float, r: float, flip: bool = False) -> None:
    """A suit symbol of half-size r centred at (cx, cy)."""
    colour = (200, 20, 30) if suit in ("hearts", "diamonds") else (15, 15, 15)
    k = -1 if flip else 1
    if suit == "diamonds":
        d.polygon([(cx, cy - r), (cx + 0.72 * r, cy), (cx, cy + r), (cx - 0.72 * r, cy)], fill=colour)
    elif suit == "hearts":
        d.ellipse((cx - r, cy - k * 0.75 * r - 0.5 * r, cx, cy - k * 0.75 * r + 0.5 * r), fill=colour)
        d.ellipse((cx, cy - k * 0.75 * r - 0.5 * r, cx + r, cy - k * 0.75 * r + 0.5 * r), fill=colour)
        d.polygon([(cx - 0.98 * r, cy - k * 0.6 * r), (cx + 0.98 * r, cy - k * 0.6 * r), (cx, cy + k * r)], fill=colour)
    elif suit == "spades":
        d.ellipse((cx - r, cy - k * 0.05 * r - 0.45 * r, cx, cy - k * 0.05 * r + 0.45 * r), fill=colour)
        d.ellipse((cx, cy - k * 0.05 * r - 0.45 * r, cx + r, cy - k * 0.05 * r + 0.45 * r), fill=colour)
        d.polygon([(cx - 0.98 * r, cy + k * 0.05 * r), (cx + 0.98 * r, cy + k * 0.05 * r), (cx, cy - k * r)], fill=colour)
        d.polygon([(cx, cy), (cx - 0.35 * r, cy + k * r), (cx + 0.35 * r, cy + k * r)], fill=colour)
    else:  # clubs
        for dx, dy in ((0, -0.45), (-0.45, 0.15), (0.45, 0.15)):
            d.ellipse((cx + (dx - 0.38) * r, cy + k * dy * r - 0.38 * r, cx + (dx + 0.38) * r, cy + k * dy * r + 0.38 * r),
                      fill=colour)
        d.polygon([(cx, cy), (cx - 0.35 * r, cy + k * r), (cx + 0.35 * r, cy + k * r)], fill=colour)


PIPS = {  # (column, row) of each pip on a 3 x 7 grid, for 2..10
    "2": [(1, 0), (1, 6)], "3": [(1, 0), (1, 3), (1, 6)], "4": [(0, 0), (2, 0), (0, 6), (2, 6)],
    "5": [(0, 0), (2, 0), (1, 3), (0, 6), (2, 6)], "6": [(0, 0), (2, 0), (0, 3), (2, 3), (0, 6), (2, 6)],
    "7": [(0, 0), (2, 0), (1, 1.5), (0, 3), (2, 3), (0, 6), (2, 6)],
    "8": [(0, 0), (2, 0), (1, 1.5), (0, 3), (2, 3), (1, 4.5), (0, 6), (2, 6)],
    "9": [(0, 0), (2, 0), (0, 2), (2, 2), (1, 3), (0, 4), (2, 4), (0, 6), (2, 6)],
    "10": [(0, 0), (2, 0), (1, 1), (0, 2), (2, 2), (0, 4), (2, 4), (1, 5), (0, 6), (2, 6)],
}


def _playing(rank: str, suit: str) -> np.ndarray:
    rng = np.random.default_rng(_seed(f"{rank}-of-{suit}"))
    card = Image.new("RGB", (CARD_W, CARD_H), (250, 250, 246))
    d = ImageDraw.Draw(card)
    red = suit in ("hearts", "diamonds")
    ink = (200, 20, 30) if red else (15, 15, 15)
    index = rank.upper() if rank == "10" else rank[0].upper() if not rank.isdigit() else rank
    for flip in (False, True):  # the index in the top-left and, upside down, the bottom-right corner
        layer = Image.new("RGBA", (CARD_W, CARD_H), (0, 0, 0, 0))
        ld = ImageDraw.Draw(layer)
        ld.text((12, 10), index, fill=ink, font=_font(30))
        _suit(ld, suit, 24, 56, 11)
        card.paste(layer.rotate(180) if flip else layer, (0, 0), layer.rotate(180) if flip else layer)
    if rank in PIPS:
        for col, row in PIPS[rank]:
            _suit(d, suit, 70 + col * 50, 70 + row * 32, 17, flip=row > 3)
    elif rank == "ace":
        _suit(d, suit, CARD_W / 2, CARD_H / 2, 48 if suit == "spades" else 30)
    else:  # court card: a framed figure, mirrored top and bottom
        d.rectangle((48, 40, CARD_W - 49, CARD_H - 41), outline=(30, 30, 120), width=3)
        robe = [(200, 30, 40), (30, 60, 170), (230, 190, 40), (20, 120, 60)][int(rng.integers(4))]
        for top in (True, False):
            y0 = 44 if top else CARD_H / 2
            half = Image.new("RGB", (CARD_W - 100, int(CARD_H / 2 - 46)), (250, 250, 246))
            hd = ImageDraw.Draw(half)
            w, h = half.size
            hd.polygon([(w * 0.2, h), (w * 0.35, h * 0.45), (w * 0.65, h * 0.45), (w * 0.8, h)], fill=robe)
            hd.ellipse((w * 0.38, h * 0.12, w * 0.62, h * 0.45), fill=(240, 200, 160), outline=(0, 0, 0))
            if rank != "jack":
                hd.polygon([(w * 0.36, h * 0.15), (w * 0.4, 0), (w * 0.5, h * 0.1), (w * 0.6, 0), (w * 0.64, h * 0.15)],
                           fill=(230, 190, 40))
            hd.rectangle((w * 0.1, h * 0.55, w * 0.3, h * 0.95), fill=robe[::-1])
            _suit(hd, suit, w * 0.8, h * 0.3, 10)
            card.paste(half if top else half.rotate(180), (50, int(y0)))
    d.rounded_rectangle((1, 1, CARD_W - 2, CARD_H - 2), radius=CORNER_RADIUS, outline=(170, 170, 170), width=1)
    return np.dstack([np.asarray(card), _corner_mask()])


def _back(name: str) -> np.ndarray:
    rng = np.random.default_rng(_seed(name))
    colour = [(160, 20, 30), (25, 45, 130), (20, 90, 50), (40, 40, 40)][int(rng.integers(4))]
    card = Image.new("RGB", (CARD_W, CARD_H), (248, 248, 244))
    d = ImageDraw.Draw(card)
    margin = int(rng.integers(8, 18))
    d.rectangle((margin, margin, CARD_W - margin, CARD_H - margin), fill=colour)
    step, light = int(rng.integers(10, 22)), _mix(colour, (255, 255, 255), 0.45)
    for k in range(-CARD_H, CARD_W + CARD_H, step):
        d.line([(k, margin), (k + CARD_H, margin + CARD_H)], fill=light, width=2)
        if rng.random() < 0.7:
            d.line([(k, margin + CARD_H), (k + CARD_H, margin)], fill=light, width=2)
    d.rectangle((0, 0, margin, CARD_H), fill=(248, 248, 244))
    d.rectangle((CARD_W - margin, 0, CARD_W, CARD_H), fill=(248, 248, 244))
    d.rectangle((0, 0, CARD_W, margin), fill=(248, 248, 244))
    d.rectangle((0, CARD_H - margin, CARD_W, CARD_H), fill=(248, 248, 244))
    if rng.random() < 0.6:
        r = int(rng.integers(25, 50))
        d.ellipse((CARD_W / 2 - r, CARD_H / 2 - r, CARD_W / 2 + r, CARD_H / 2 + r), fill=light, outline=colour, width=3)
    return np.dstack([np.asarray(card), _corner_mask()])


def _magic(name: str) -> np.ndarray:
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
