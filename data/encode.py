"""Turn one image file into record bytes: decode, check, orient, convert to RGB, resize, re-encode.

Runs in pack's worker processes, so it imports no MXNet. JPEG files are decoded at a reduced scale
(libjpeg DCT scaling through PIL's `draft`) when the target is at most half the original size, which
is where most of pack's speed over im2rec comes from (see bench/bench_pack.py); OpenCV then resizes
(bilinear is enough once at most a factor 2 is left) and encodes, both faster than PIL's.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import warnings

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps

from .crops import square_crop
from .formats.common import clean_boxes
from .samples import Problem, Problems, Sample

MAX_PIXELS = 200_000_000  # PIL's decompression-bomb bound for pack (set at each use: serve/ sets its own)
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
ORIENTATION_TAG = 0x0112
TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that swap width and height


@dataclasses.dataclass(frozen=True)
class EncodeOptions:
    resize: int | None = None  # shorter side, downscale only
    quality: int = 95
    pass_through: bool = False


@dataclasses.dataclass
class Encoded:
    """What a worker returns. `data` is None when the image was skipped (see `problems`)."""

    data: bytes | None
    digest: str
    size: tuple[int, int] = (0, 0)  # width, height of the stored image
    source_size: tuple[int, int] = (0, 0)  # width, height of the file as oriented for its labels
    boxes: np.ndarray | None = None  # (N, 5): cls, xmin, ymin, xmax, ymax normalised
    problems: list[Problem] = dataclasses.field(default_factory=list)


def encode(sample: Sample, options: EncodeOptions) -> Encoded:
    """Encode one sample; never raises for a bad file, reports it in `problems` instead."""
    problems = Problems()
    try:
        raw = sample.path.read_bytes()
    except OSError as e:
        problems.add("unreadable file", sample.rel, f"{e.strerror or e}; skipped", images=1)
        return Encoded(None, "", problems=problems.items)
    digest = hashlib.sha1(raw).hexdigest()
    if sample.crop is not None:  # crops of one photo are different images
        digest = hashlib.sha1(f"{digest} {sample.crop}".encode()).hexdigest()
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # some libraries (e.g. gluoncv) set it True on import
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _encode(raw, digest, sample, options, problems)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        problems.add("corrupt image", sample.rel, f"{_decode_failure(raw, e)}; skipped", images=1)
        return Encoded(None, digest, problems=problems.items)


def _decode_failure(raw: bytes, error: Exception) -> str:
    """Why a file could not be decoded, in words (PIL's messages name in-memory buffers)."""
    if not raw:
        return "empty file"
    if isinstance(error, Image.UnidentifiedImageError):
        return "not an image in any format PIL reads (wrong suffix, or damaged from the first byte)"
    if isinstance(error, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"larger than {Image.MAX_IMAGE_PIXELS // 1_000_000} megapixels ({error})"
    return f"cannot decode ({type(error).__name__}: {error})"


def _encode(raw: bytes, digest: str, sample: Sample, options: EncodeOptions, problems: Problems) -> Encoded:
    img = Image.open(io.BytesIO(raw))
    fmt, mode = img.format, img.mode
    orientation = img.getexif().get(ORIENTATION_TAG, 1) if fmt in ("JPEG", "TIFF", "PNG", "WEBP") else 1
    apply_orientation = _should_orient(orientation, img.size, sample)
    width, height = img.size
    if apply_orientation and orientation in TRANSPOSING_ORIENTATIONS:
        width, height = height, width
    if sample.crop is not None:
        return _encode_crop(img, digest, sample, options, orientation if apply_orientation else 1, problems)
    target = _target_size(width, height, options.resize)
    pass_through = options.pass_through and fmt == "JPEG" and mode in ("RGB", "L") and orientation == 1
    if options.pass_through and not pass_through:
        problems.add("re-encoded", sample.rel, f"{fmt} {mode} file (EXIF orientation {orientation}) cannot pass through "
                     "as it is; stored as an RGB JPEG")
    if pass_through:
        img.draft("RGB", (max(1, width // 8), max(1, height // 8)))  # cheap full decode: catches truncation
        img.load()
        data, stored = raw, (width, height)
    else:
        if fmt == "JPEG" and mode in ("RGB", "L", "YCbCr"):
            raw_target = target if not (apply_orientation and orientation in TRANSPOSING_ORIENTATIONS) else target[::-1]
            img.draft("RGB", raw_target)
        rgb = _oriented_rgb(img, mode, orientation if apply_orientation else 1, sample.rel, problems)
        data, stored = _resize_encode(rgb, target, options.quality)
    boxes = _normalised_boxes(sample, (width, height), problems) if sample.is_detection else None
    if boxes is not None and len(boxes) == 0:
        problems.add("no objects", sample.rel, "no usable object is left in this image; image skipped", images=1)
        return Encoded(None, digest, problems=problems.items)
    return Encoded(data, digest, stored, (width, height), boxes, problems.items)


def _oriented_rgb(img: Image.Image, mode: str, orientation: int, item: str, problems: Problems) -> np.ndarray:
    """The decoded pixels, turned by the EXIF `orientation` (1: as stored), as RGB."""
    img.load()
    if orientation != 1:
        img = ImageOps.exif_transpose(img)
    return np.asarray(_to_rgb(img, mode, item, problems))


def _encode_crop(img: Image.Image, digest: str, sample: Sample, options: EncodeOptions, orientation: int,
                 problems: Problems) -> Encoded:
    """The square around `sample.crop` (data/crops.py: the rule two-stage serving cuts by too)."""
    rgb = _oriented_rgb(img, img.mode, orientation, sample.rel, problems)
    height, width = rgb.shape[:2]
    frame_w, frame_h = sample.size or (width, height)
    box = sample.crop
    x0, x1 = box.xmin * width / frame_w, box.xmax * width / frame_w
    y0, y1 = box.ymin * height / frame_h, box.ymax * height / frame_h
    square = square_crop(rgb, (x0, y0, x1, y1))
    if square is None:
        problems.add("zero-area box", sample.rel, f"box {[round(v, 1) for v in (x0, y0, x1, y1)]} is less than two "
                     "pixels across; not cropped", images=1)
        return Encoded(None, digest, problems=problems.items)
    side = square.shape[0]
    data, stored = _resize_encode(square, _target_size(side, side, options.resize), options.quality)
    return Encoded(data, digest, stored, (side, side), None, problems.items)


def _resize_encode(rgb: np.ndarray, target: tuple[int, int], quality: int) -> tuple[bytes, tuple[int, int]]:
    """Resize with OpenCV (bilinear when the JPEG draft left at most 2x to go, else area) and encode."""
    h, w = rgb.shape[:2]
    if (w, h) != target:
        interpolation = cv2.INTER_LINEAR if w <= 2 * target[0] else cv2.INTER_AREA
        rgb = cv2.resize(rgb, target, interpolation=interpolation)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes(), target


def _should_orient(orientation: int, raw_size: tuple[int, int], sample: Sample) -> bool:
    """Apply EXIF orientation like OpenCV does, unless boxes were drawn on the unrotated pixels."""
    if orientation == 1:
        return False
    if not sample.is_detection and sample.crop is None:
        return True
    return sample.size is not None and orientation in TRANSPOSING_ORIENTATIONS and sample.size == raw_size[::-1] != raw_size


def _target_size(width: int, height: int, resize: int | None) -> tuple[int, int]:
    if not resize or min(width, height) <= resize:
        return width, height
    scale = resize / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _to_rgb(img: Image.Image, mode: str, item: str, problems: Problems) -> Image.Image:
    if img.mode == "RGB":
        return img
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        problems.add("converted", item, f"{mode} image with transparency composited on white")
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if mode not in ("L", "P"):
        problems.add("converted", item, f"{mode} image converted to RGB")
    if img.mode.startswith("I") or img.mode == "F":
        return _wide_to_rgb(np.asarray(img))
    return img.convert("RGB")


def _wide_to_rgb(values: np.ndarray) -> Image.Image:
    """16-bit (or 32-bit int / float) grey to 8-bit RGB, scaled like OpenCV does (PIL would clip at 255)."""
    values = values.astype(np.float64)
    if values.max(initial=0) > 255:
        values = values * (255.0 / 65535.0)
    grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return Image.fromarray(np.repeat(grey[..., None], 3, axis=2), "RGB")


def _normalised_boxes(sample: Sample, actual: tuple[int, int], problems: Problems) -> np.ndarray:
    frame = sample.size or actual
    if sample.size is not None and sample.size != actual:
        problems.add("size mismatch", sample.rel,
                     f"annotation says {sample.size[0]}x{sample.size[1]}, image is {actual[0]}x{actual[1]}; "
                     "boxes taken in the annotation's frame")
    boxes = sample.boxes if sample.size is not None else clean_boxes(sample.boxes, *actual, sample.rel, problems)
    w, h = frame
    rows = [(b.cls, b.xmin / w, b.ymin / h, b.xmax / w, b.ymax / h) for b in boxes]
    out = np.clip(np.asarray(rows, dtype=np.float32).reshape(-1, 5), [0, 0, 0, 0, 0], [np.inf, 1, 1, 1, 1])
    # a box less than a pixel of the stored image across (an absurd annotated size) has no area left
    flat = ((out[:, 3] - out[:, 1]) * actual[0] < 1) | ((out[:, 4] - out[:, 2]) * actual[1] < 1)
    for row in out[flat]:
        problems.add("zero-area box", sample.rel, f"box {row[1:].round(6).tolist()} is less than a pixel across in the "
                     f"{actual[0]}x{actual[1]} image; dropped")
    return out[~flat]
