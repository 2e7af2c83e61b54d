"""Is this file a knee radiograph? The simple, documented check ``predict`` applies to every image.

Refused (the input is bad: exit 2, one line naming the patient and the file):

1. the header, before any pixel is decoded: fewer than 32 pixels a side, more than 100 million
   pixels (a decompression bomb), an aspect above 3, or a colour mode with an alpha channel or
   four channels (`data.plausibility.IMAGE_LIMITS`, shared with ``data check`` and training);
2. the pixels: a colour picture (more than 0.1 % of pixels coloured: a photograph, a chart with
   coloured lines) or a blank one (gray levels spanning less than 5 % of the range).

Flagged (scored, with a line in the ``warnings`` column): random noise (neighbouring pixels do not
correlate: below `IMAGE_LIMITS.min_neighbour_correlation`, where every study image lies near 0.99),
or an image in which the knee localiser of the biomarkers finds no joint line with bone above and
below it (`biomarkers.localise.find_joint`: a gray photograph, a page of text, another body part).
Flags rather than refusals, because both are heuristics: all 239 images of the study pass them, a knee
of another cohort might not.

Every format a cohort may hold (JPEG, PNG, TIFF, BMP, DICOM) is read by the readers of
`data.image_readers`, as training reads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data.image_readers import image_header, open_colour, open_grayscale
from .data.plausibility import IMAGE_LIMITS, image_header_problem, pixel_problem

#: long side (pixels) the check decodes at: the localiser works at ~512 px, the colour test needs no more
CHECK_SIDE = 1024
NOT_A_KNEE = "not recognised as a knee radiograph ({why}); the score may mean nothing"


def neighbour_correlation(gray: np.ndarray, every: int = 4) -> float:
    """The smaller of the correlations of pixels with their right and their lower neighbours, in every
    ``every``-th row and column (the same value, a quarter of the work; 1 for a flat image): near 1 for a
    radiograph, near 0 for random noise."""
    lowest = 1.0
    for a, b in ((gray[::every, :-1], gray[::every, 1:]), (gray[:-1, ::every], gray[1:, ::every])):
        a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
        a -= a.mean()
        b -= b.mean()
        scale = np.sqrt((a @ a) * (b @ b))
        if scale > 0:
            lowest = min(lowest, float(a @ b / scale))
    return lowest


def radiograph_problems(path: Path) -> tuple[str | None, str | None]:
    """(why the file is refused, why it is flagged): each None when there is nothing to say. ImageReadError
    (one line naming the file) when it cannot be read."""
    from .biomarkers.localise import find_joint  # deferred: imports scipy, skimage and tqdm

    header = image_header(path)
    refused = image_header_problem(header["width"], header["height"], header["mode"])
    if refused:
        return refused, None
    colour = open_colour(path, draft=CHECK_SIDE)
    gray = np.asarray(colour.convert("L") if colour is not None else open_grayscale(path, draft=CHECK_SIDE))
    refused = pixel_problem(gray, None if colour is None else np.asarray(colour))
    if refused:
        return refused, None
    smooth = neighbour_correlation(gray)
    if smooth < IMAGE_LIMITS.min_neighbour_correlation:
        return None, NOT_A_KNEE.format(why=f"random noise: neighbouring pixels correlate {smooth:.2f}, a "
                                           f"radiograph's above {IMAGE_LIMITS.min_neighbour_correlation:g}")
    why = find_joint(gray)
    if why:
        return None, NOT_A_KNEE.format(why=f"no knee joint found: {why}")
    return None, None
