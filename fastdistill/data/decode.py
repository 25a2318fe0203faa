"""One image file -> uint8 [3, size, size]: RGB, shorter side resized to ``size`` (bicubic), centre crop.

JPEGs are first decoded at a reduced scale (PIL draft mode: the largest of 1/2, 1/4, 1/8 that keeps both sides at
least ``size``), which skips most of the decoding work for large photos. :data:`DECODE_SETTINGS` names all of this,
so a decoded cache made under other settings is not reused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL
from PIL import Image

DECODE_SETTINGS = f"rgb;jpeg-draft;shorter-side-bicubic;centre-crop;pillow-{PIL.__version__}"
# What PIL raises on a file it cannot identify, a truncated or garbled one, or a decompression bomb.
UNREADABLE = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def unreadable_message(path: str | Path, exc: BaseException) -> str:
    return (f"corrupt or unreadable image {path} ({type(exc).__name__}); remove or replace it, or pass --skip-corrupt "
            "to skip such files")


def decode_image(path: str | Path, size: int) -> np.ndarray:
    """Decode ``path`` to uint8 [3, size, size]; raises one of :data:`UNREADABLE` for a bad file."""
    with Image.open(path) as im:
        im.draft("RGB", (size, size))
        im = im.convert("RGB")
        w, h = im.size
        scale = size / min(w, h)
        im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
        w, h = im.size
        left, top = (w - size) // 2, (h - size) // 2
        im = im.crop((left, top, left + size, top + size))
        return np.array(im, dtype=np.uint8).transpose(2, 0, 1)


def try_decode(path: str | Path, size: int) -> tuple[np.ndarray | None, str | None]:
    """``(image, None)``, or ``(None, one-line message)`` for a corrupt or unreadable file."""
    try:
        return decode_image(path, size), None
    except UNREADABLE as exc:
        return None, unreadable_message(path, exc)
