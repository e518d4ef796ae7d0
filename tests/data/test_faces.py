"""synth from card images (`synth --faces`), `faces` (cards cut from photos) and their bad inputs."""
import hashlib
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from magiccards.data import scenes, synth as synth_module
from magiccards.data.cutout import cut_faces, find_card
from magiccards.data.faces import face, load_faces, rounded_mask
from magiccards.data.synth import synth
from magiccards.errors import DataError

from ..helpers import run_cli

CARD_FACES = Path(__file__).resolve().parents[1] / "data" / "files" / "card-faces"


def _digests(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.suffix in (".jpg", ".xml")}


def _copy(name: str, target: Path, fmt: str = "PNG", **convert) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.open(CARD_FACES / f"{name}.png").save(target, fmt, **convert)
    return target


@pytest.fixture()
def layouts(tmp_path) -> dict:
    """The same four cards in each accepted layout: a file per class (PNG, JPEG, WebP, a landscape one, one
    with alpha), class folders of several images, and both mixed."""
    flat = tmp_path / "flat"
    _copy("king-of-spades", flat / "King of Spades.png")
    _copy("queen-of-hearts", flat / "queen_of_hearts.jpg", "JPEG", quality=92)
    _copy("ace-of-clubs", flat / "ace-of-clubs.webp", "WEBP")
    Image.open(CARD_FACES / "ten-of-diamonds.png").rotate(90, expand=True).save(flat / "ten-of-diamonds.png")
    rgba = Image.open(CARD_FACES / "nine-of-hearts.png").convert("RGBA")
    rgba.putalpha(Image.fromarray(rounded_mask(rgba.height, rgba.width)))
    rgba.save(flat / "nine-of-hearts.png")
    folders = tmp_path / "folders"
    for rank in ("king", "queen"):
        for suit in ("spades", "hearts"):
            _copy(f"{rank}-of-{suit}", folders / rank / f"{rank[0]}{suit[0]}.png")
    mixed = tmp_path / "mixed"
    _copy("jack-of-clubs", mixed / "jack.png")
    for suit in ("clubs", "diamonds"):
        _copy(f"ace-of-{suit}", mixed / "ace" / f"{suit}.png")
    return {"flat": flat, "folders": folders, "mixed": mixed}


def test_every_layout_reads_and_renders_deterministically_whatever_the_workers(layouts, tmp_path):
    assert load_faces(layouts["flat"]).classes == ("ace-of-clubs", "king-of-spades", "nine-of-hearts",
                                                   "queen-of-hearts", "ten-of-diamonds")
    folders = load_faces(layouts["folders"])
    assert folders.classes == ("king", "queen") and [len(i) for i in folders.images] == [2, 2]
    assert load_faces(layouts["mixed"]).classes == ("ace", "jack")
    landscape = load_faces(layouts["flat"]).images[4][0]
    assert landscape.shape[1] > landscape.shape[0]  # drawn as a landscape card
    for name, folder in layouts.items():
        for task in ("classification", "detection"):
            runs = []
            for workers in (1, 2):
                out = tmp_path / f"{name}-{task}-{workers}"
                scene = dict(distractors=0.5, fans=0.3) if task == "detection" else {}
                result = synth(out, task=task, count=10, size=128, faces=folder, seed=3, workers=workers,
                               progress=False, **scene)
                runs.append(_digests(out))
            assert runs[0] == runs[1] and len(runs[0]) == (10 if task == "classification" else 20), (name, task)
            assert (out / "classes.txt").read_text().split() == list(result.classes)
    other = tmp_path / "other-seed"
    synth(other, task="detection", count=10, size=128, faces=layouts["folders"], seed=4, workers=2, progress=False)
    assert set(_digests(other).values()).isdisjoint(_digests(tmp_path / "folders-detection-1").values())


def test_alpha_corners_stay_transparent_and_square_corners_are_rounded(layouts):
    faces = load_faces(layouts["flat"])
    for images in faces.images:
        card = images[0]
        assert card.dtype == np.uint8 and card.shape[2] == 4
        h, w = card.shape[:2]
        assert all(card[y, x, 3] == 0 for y, x in ((0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1)))
        assert card[h // 2, w // 2, 3] == 255 and card[h // 2, 1, 3] == 255  # the card itself stays opaque
    # a face with its own transparent shape keeps it exactly
    own = np.zeros((200, 140, 4), np.uint8)
    own[..., :3] = 200
    cv2.ellipse(own, (70, 100), (60, 90), 0, 0, 360, (200, 200, 200, 255), -1)
    assert np.array_equal(face(own)[..., 3], own[..., 3])
    # a scan's black corners (the card-faces images) become transparent, the white card next to them does not
    king = faces.images[faces.classes.index("king-of-spades")][0]
    original = np.asarray(Image.open(CARD_FACES / "king-of-spades.png"))
    dark = original.sum(axis=2) < 60
    assert (king[..., 3][dark[:20, :20].nonzero()] < 128).mean() > 0.9


def test_boxes_are_the_visible_part_of_each_labelled_card_occlusion_and_distractors_included(monkeypatch, tmp_path):
    """Cards of pure colours on black, no camera effects: every pixel of a labelled card's colour lies in a box
    of its class and each box touches its card's pixels on all four sides; distractors (grey) get no box."""
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]])

    def solid(rng, job, cls):
        card = np.zeros((168, 120, 4), np.uint8)
        card[..., :3] = colours[cls] if cls >= 0 else 128
        card[..., 3] = rounded_mask(168, 120)
        return card

    monkeypatch.setattr(synth_module, "_card", solid)
    monkeypatch.setattr(synth_module, "_camera", lambda rng, job, img, *a, **k: scenes.to_uint8(img))
    monkeypatch.setattr(scenes, "background", lambda rng, h, w, photos=None: np.zeros((h, w, 3), np.float32))
    job = synth_module._Job(tmp_path, "detection", ("r", "g", "b"), 256, (), 4, 0, fans=0.3,
                            faces=load_faces(CARD_FACES, ["king-of-spades", "queen-of-hearts", "ace-of-clubs"]),
                            distractors=0.5)
    checked = occluded = 0
    for index in range(40):
        img, objects = synth_module.detection_scene(np.random.default_rng([7, index]), job)
        pixels = img.astype(int)
        for cls in range(3):
            others = [c for c in range(3) if c != cls]
            own = (pixels[..., cls] > 60) & (pixels[..., others].max(axis=2) < 0.5 * pixels[..., cls])
            pure = own & (pixels[..., others].max(axis=2) < 0.05 * pixels[..., cls])  # not a blended edge, nor a hand
            inside = np.zeros_like(own)
            for c, (x0, y0, x1, y1) in objects:
                if c != cls:
                    continue
                inside[y0:y1, x0:x1] = True
                box = own[y0:y1, x0:x1]
                edges = (box[:3].any(), box[-3:].any(), box[:, :3].any(), box[:, -3:].any())  # within 2 px
                assert all(edges), (index, cls, (x0, y0, x1, y1), edges)  # tight on its visible pixels
                checked += 1
                occluded += box.mean() < 0.9 * cv2.contourArea(np.argwhere(box).astype(np.float32)) / box.size
            strays = pure & ~cv2.dilate(inside.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            # only the last sliver of a card covered (by later cards or a hand) below what keeps a box
            assert strays.sum() < max(80, 0.03 * pure.sum()), (index, cls, strays.sum())
    assert checked >= 60


def _card_photo(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A phone-like photo of one card on a plain surface, and where its corners truly are."""
    rng = np.random.default_rng(seed)
    h, w = 900, 1200
    canvas = np.zeros((h, w, 3), np.float32) + rng.uniform(20, 200, 3) + rng.normal(0, 4, (h, w, 3))
    faces = load_faces(CARD_FACES)
    card = faces.images[seed % len(faces)][0]
    quad = scenes.card_quad(rng, card.shape[1], card.shape[0], (w / 2 + rng.uniform(-100, 100), h / 2 + rng.uniform(-50, 50)),
                            rng.uniform(350, 600), rng.uniform(-180, 180), 0.05)
    scenes.cast_shadow(rng, canvas, card, quad)
    scenes.paste(canvas, card, quad)
    return scenes.to_uint8(scenes.sensor_noise(rng, scenes.lighting(rng, canvas))), quad


def test_faces_finds_a_card_within_two_percent_of_its_side():
    for seed in range(12):
        photo, truth = _card_photo(seed)
        found = find_card(photo)
        assert found is not None, seed
        side = float(np.linalg.norm(truth[0] - truth[1]))
        error = min(np.linalg.norm(np.roll(found, k, axis=0) - truth, axis=1).max() for k in (0, 2)) / side
        assert error < 0.02, (seed, error)  # up to the card's own 180-degree symmetry


def test_faces_command_cuts_names_lists_and_draws_a_contact_sheet(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for seed in range(3):
        cv2.imwrite(str(photos / f"IMG_{seed}.jpg"), _card_photo(seed)[0][..., ::-1])
    cv2.imwrite(str(photos / "IMG_9-empty-table.jpg"), np.full((600, 800, 3), 90, np.uint8))
    (photos / "IMG_8-broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    done = run_cli("faces", photos, tmp_path / "faces", "--names", "a,b,c")
    assert done.returncode == 1 and "--names gives 3 name(s) for 5 photo(s)" in done.stderr and not (tmp_path / "faces").exists()
    done = run_cli("faces", photos, tmp_path / "faces", "--aspect", "63:88")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "faces").iterdir()) == ["img-0.png", "img-1.png", "img-2.png"]
    assert "skipped 2 photo(s)" in done.stderr and "IMG_9-empty-table.jpg: no card-shaped" in done.stderr
    assert "IMG_8-broken.jpg: cannot be read" in done.stderr and "Traceback" not in done.stderr
    sheet = tmp_path / "faces-contact-sheet.png"
    assert str(sheet) in done.stdout and Image.open(sheet).size[0] >= 600
    for p in (tmp_path / "faces").iterdir():
        w, h = Image.open(p).size
        assert abs(w / h - 63 / 88) < 0.01
    # what it cut is a card image synth draws
    assert load_faces(tmp_path / "faces").classes == ("img-0", "img-1", "img-2")
    empty = tmp_path / "blank"
    empty.mkdir()
    cv2.imwrite(str(empty / "table.png"), np.full((300, 400, 3), 90, np.uint8))
    done = run_cli("faces", empty, tmp_path / "none")
    assert done.returncode == 1 and "no card found in any of 1 photo(s)" in done.stderr


@pytest.mark.parametrize("make, message", [
    (lambda d: None, "holds no card image"),
    (lambda d: (_copy("king-of-spades", d / "king" / "deeper" / "k.png"), _copy("queen-of-hearts", d / "q.png")),
     "1 folder(s) nested more than one level (king/deeper)"),
    (lambda d: (_copy("king-of-spades", d / "King.png"), _copy("king-of-hearts", d / "king.jpg", "JPEG")),
     "1 class name(s) clash once cleaned"),
    (lambda d: (_copy("king-of-spades", d / "king.png"), _copy("king-of-spades", d / "queen.png")),
     "1 picture(s) under two classes"),
    (lambda d: (_copy("king-of-spades", d / "king.png"), Image.new("RGB", (40, 90)).save(d / "tiny.png")),
     "1 image(s) under 64 px on the shorter side, too small to learn a card from: tiny.png (40x90)"),
    (lambda d: (_copy("king-of-spades", d / "king.png"), (d / "queen.png").write_bytes(b"\x89PNG broken")),
     "1 class(es) left with no readable image: queen"),
])
def test_bad_card_folders_are_one_line_and_nothing_is_written(tmp_path, make, message):
    faces = tmp_path / "faces"
    faces.mkdir()
    make(faces)
    done = run_cli("synth", tmp_path / "out", "--faces", faces, "--count", "4", "--task", "detection")
    assert done.returncode == 1, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_corrupt_image_is_skipped_and_listed_and_a_subset_of_classes_is_drawn(tmp_path):
    faces = tmp_path / "faces"
    for suit in ("spades", "hearts"):
        _copy(f"king-of-{suit}", faces / "king" / f"{suit}.png")
    (faces / "king" / "clubs.jpg").write_bytes(b"\xff\xd8\xff truncated")
    _copy("queen-of-hearts", faces / "queen.png")
    _copy("ace-of-clubs", faces / "ace.png")
    (faces / "README.md").write_text("my cards\n")  # not an image: not a class
    done = run_cli("synth", tmp_path / "out", "--faces", faces, "--classes", "King,queen", "--count", "6",
                   "--size", "96", "--workers", "1")
    assert done.returncode == 0, done.stderr
    assert "skipped 1 card image(s)" in done.stderr and "king/clubs.jpg: cannot be read as an image" in done.stderr
    assert (tmp_path / "out" / "classes.txt").read_text().split() == ["king", "queen"]
    assert len(list((tmp_path / "out" / "king").glob("*.jpg"))) == 3
    done = run_cli("synth", tmp_path / "out2", "--faces", faces, "--classes", "kign")
    assert done.returncode == 1 and "did you mean 'king'?" in done.stderr and not (tmp_path / "out2").exists()
    done = run_cli("synth", tmp_path / "out3", "--faces", faces, "--classes", "3")
    assert done.returncode == 1 and "names the cards to draw" in done.stderr
    with pytest.raises(DataError, match="is not a folder"):
        load_faces(tmp_path / "nowhere")


def test_distractors_are_drawn_but_never_labelled(tmp_path):
    out = tmp_path / "d"
    synth(out, task="detection", count=30, size=160, faces=CARD_FACES, classes=["king-of-spades"], seed=2,
          workers=1, distractors=1.0, max_cards=1, progress=False)
    names = {o.findtext("name") for x in (out / "annotations").glob("*.xml") for o in ET.parse(x).iter("object")}
    counts = [len(ET.parse(x).findall("object")) for x in (out / "annotations").glob("*.xml")]
    assert names == {"king-of-spades"} and max(counts) == 1


def test_faces_cuts_the_card_out_of_a_real_phone_photo(tmp_path):
    """A real photo of one card on a carpet (tests/data, Apache-2.0): the card is found, flat, in proportion."""
    photo = Path(__file__).resolve().parents[1] / "data" / "files" / "playing-cards" / "IMG_2385.JPG"
    result = cut_faces(photo, tmp_path / "faces", progress=False)
    assert [p.name for p in result.written] == ["img-2385.png"] and not result.skipped
    w, h = Image.open(result.written[0]).size
    assert h > w and 0.6 < w / h < 0.8  # a poker card is 63:88 = 0.72
    assert result.sheet.is_file()


def test_scenes_of_card_images_pack_into_the_crops_a_two_stage_classifier_learns_from(tmp_path):
    """The faces walkthrough's classifier data: detection scenes of card images, `pack --crops`: one crop per
    labelled box, the card images' classes in their order, the crop rule written for `combine` to check."""
    from magiccards.data.crops import CROP_RULE_FILE, RULE
    from magiccards.data.pack import pack

    names = ["king-of-spades", "queen-of-hearts", "ace-of-clubs"]
    synth(tmp_path / "scenes", task="detection", count=12, size=544, faces=CARD_FACES, classes=names, seed=2,
          workers=1, distractors=0.5, fans=0.5, progress=False)
    boxes = [o.findtext("name") for x in (tmp_path / "scenes" / "annotations").glob("*.xml")
             for o in ET.parse(x).iter("object")]
    crops = pack(tmp_path / "scenes", tmp_path / "crops", val_fraction=0, resize=128, crops=True, workers=1,
                 progress=False, log=lambda line: None)
    assert crops.task == "classification" and list(crops.classes) == names
    assert sum(crops.images.values()) == len(boxes) >= 12  # every labelled box, no distractor
    assert json.loads((tmp_path / "crops" / CROP_RULE_FILE).read_text())["name"] == RULE["name"]
