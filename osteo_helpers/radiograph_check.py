"""Is this file a knee radiograph? The simple, documented check ``predict`` applies to every image.

Refused (the input is bad: exit 2, one line naming the patient and the file):

1. the header, before any pixel is decoded: fewer than 32 pixels a side, more than 100 million
   pixels (a decompression bomb), an aspect above 3, or a colour mode with an alpha channel or
   four channels (`data.plausibility.IMAGE_LIMITS`, shared with ``data check`` and training);
2. the pixels: a colour picture (more than 0.1 % of pixels coloured: a photograph, a chart with
   coloured lines) or a blank one (gray levels spanning less than 5 % of the range).

Flagged (scored, with a line in the ``warnings`` column): the knee localiser of the biomarkers
finds no joint line with bone above and below it (`biomarkers.localise.find_joint`: a gray
photograph, a page of text, another body part). A flag rather than a refusal, because the
localiser is a heuristic: all 239 images of the study pass it, a knee of another cohort might not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .data import ImageReadError
from .data.plausibility import image_header_problem, pixel_problem

#: long side (pixels) the check decodes at: the localiser works at ~512 px, the colour test needs no more
CHECK_SIDE = 1024


def radiograph_problems(path: Path) -> tuple[str | None, str | None]:
    """(why the file is refused, why it is flagged): each None when there is nothing to say."""
    from .biomarkers.localise import find_joint

    try:
        with Image.open(path) as im:
            refused = image_header_problem(im.width, im.height, im.mode)
            if refused:
                return refused, None
            one_channel = im.mode in ("L", "I;16", "I", "F")
            im.draft("L" if one_channel else "RGB", (CHECK_SIDE, CHECK_SIDE))
            im = ImageOps.exif_transpose(im)
            rgb = None if one_channel else np.asarray(im.convert("RGB"))
            gray = np.asarray(im.convert("L"))  # PIL's luma: one C pass, no float copy of three channels
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"{path}: cannot decode image ({exc})") from exc
    refused = pixel_problem(gray, rgb)
    if refused:
        return refused, None
    why = find_joint(gray)
    if why:
        return None, f"not recognised as a knee radiograph (no knee joint found: {why}); the score may mean nothing"
    return None, None
