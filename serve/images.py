"""Image bytes in, RGB pixels out: decoding for inference, with the size checked before any decoding.

A 30000 x 30000 JPEG is a few hundred kilobytes and 2.7 GB once decoded: the header is read first and
an image over `max_pixels` is refused without decoding it. EXIF orientation is applied, as `pack` does
for training images (an upright image is what the network learnt).
"""
from __future__ import annotations

import io
import os
import warnings

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from magiccards.errors import UserError

# images with more pixels than this are refused (MAGICCARDS_MAX_IMAGE_PIXELS overrides): 64 MP
MAX_PIXELS = int(os.environ.get("MAGICCARDS_MAX_IMAGE_PIXELS", "64000000"))
# one request's images together (a JSON or RecordIO batch); MAGICCARDS_MAX_REQUEST_PIXELS overrides: 128 MP
MAX_REQUEST_PIXELS = int(os.environ.get("MAGICCARDS_MAX_REQUEST_PIXELS", "128000000"))
Image.MAX_IMAGE_PIXELS = None  # our own bound applies, before decoding; PIL's warning would only add noise


class ImageError(UserError):
    """Bytes that are not a usable image; `too_large` tells a size refusal from undecodable bytes."""

    def __init__(self, message: str, too_large: bool = False):
        super().__init__(message)
        self.too_large = too_large


def image_size(data: bytes, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) of encoded `data` from its header alone, nothing decoded; ImageError for bytes that are
    not an image and (too_large) for an image over `max_pixels`."""
    if not data:
        raise ImageError("the image is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except UnidentifiedImageError:
        raise ImageError("the bytes are not an image in a known format (JPEG, PNG, ...)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageError(f"the image cannot be read ({e}); is it truncated?") from None
    if width * height > max_pixels:
        raise ImageError(f"the image is {width} x {height} pixels, more than the {max_pixels:,} allowed "
                         "(MAGICCARDS_MAX_IMAGE_PIXELS); send a smaller image", too_large=True)
    return width, height


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """HWC uint8 RGB pixels of JPEG/PNG/... `data`, upright (EXIF orientation applied)."""
    if not data:
        raise ImageError("the image is empty (0 bytes)")
    Image.MAX_IMAGE_PIXELS = None  # at each use: pack's bound (data/encode.py) must not refuse before ours
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(f"the image is {width} x {height} pixels, more than the {max_pixels:,} allowed "
                                 "(MAGICCARDS_MAX_IMAGE_PIXELS); send a smaller image", too_large=True)
            ImageFile.LOAD_TRUNCATED_IMAGES = False  # gluoncv sets it True on import: a cut-short image is an error
            image.load()
            image = ImageOps.exif_transpose(image)
            return np.asarray(image.convert("RGB"))
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("the bytes are not an image in a known format (JPEG, PNG, ...)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageError(f"the image cannot be decoded ({e}); is it truncated?") from None
