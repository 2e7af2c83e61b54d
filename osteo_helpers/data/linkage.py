"""Is each image linked to the right record? Identical images with disagreeing records, and images
that are near-copies of one another (perceptual hash).

A byte-identical image under two patient IDs is one radiograph; if the two records give a
different sex or age, at least one of them belongs to someone else, so part of the image-to-record
link is wrong (not one person entered twice). Byte identity misses a re-encoded, resized or
re-exposed copy; a perceptual hash (pHash, 64 bits: the signs of the lowest DCT frequencies of a
32 x 32 grayscale thumbnail, via the maintained ``imagehash`` package) does not. Re-encoded (JPEG
quality 60, PNG), halved or brightened copies of this cohort's radiographs differ from their
original by 0-2 bits, and the closest two distinct radiographs by 4 (2026-12, measured on the
published dataset), so pairs within ``NEAR_DUPLICATE_BITS`` = 3 bits are near-duplicates. Crops
move the hash: pHash does not find a cropped copy.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
from PIL import Image

from .errors import ImageReadError
from .image_readers import _one_line, open_grayscale

#: Hamming distance (of 64 pHash bits) at or below which two images are near-duplicates
NEAR_DUPLICATE_BITS = 3
HASH_SIZE = 8
NEAR_DUPLICATE_RULE = f"pHash of {HASH_SIZE * HASH_SIZE} bits, Hamming distance <= {NEAR_DUPLICATE_BITS}"


def decode_and_hash(path: Path) -> tuple[str | None, str | None]:
    """(why the image cannot be decoded to its last byte, its pHash as hex): one decode serves both, at
    reduced scale where the format allows (the hash reads a 32 px thumbnail; a JPEG's DCT scaling still
    reads every byte, so a truncated file fails) and for any format the image readers know, DICOM
    included. A header above the pixel limit (a decompression bomb) is reported without decoding."""
    try:
        return None, str(imagehash.phash(open_grayscale(path, draft=128), hash_size=HASH_SIZE))
    except ImageReadError as exc:
        return str(exc).removeprefix(f"{path}: "), None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return _one_line(exc), None


def decode_and_hash_all(images: dict[str, Path]) -> dict[str, tuple[str | None, str | None]]:
    """patient_id -> `decode_and_hash` of its image (two threads: the decoders release the GIL)."""
    ordered = sorted(images.items())
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip([pid for pid, _ in ordered], pool.map(decode_and_hash, [path for _, path in ordered]),
                        strict=True))


def hash_pairs(hashes: dict[str, str], sha256: dict[str, str] | None = None,
               max_bits: int = NEAR_DUPLICATE_BITS, closest_above: int = 0) -> pd.DataFrame:
    """The pairs of images within ``max_bits`` of each other, and the ``closest_above`` nearest pairs
    beyond (they show the threshold's margin), closest first: ``a, b, bits, identical_bytes``.

    Vectorised over 64-bit integers (XOR and popcount), one image against all later ones: a cohort of
    5,000 images (12.5 million pairs) takes about a second.
    """
    ids = sorted(hashes)
    bits = np.array([int(hashes[pid], 16) for pid in ids], dtype=np.uint64)
    within: list[tuple[int, int, int]] = []
    beyond: list[tuple[int, int, int]] = []
    for i in range(len(ids) - 1):
        distance = np.bitwise_count(bits[i] ^ bits[i + 1:]).astype(int)
        close = np.flatnonzero(distance <= max_bits)
        within += [(i, i + 1 + j, distance[j]) for j in close]
        if closest_above:
            far = np.flatnonzero(distance > max_bits)
            nearest = far[np.argsort(distance[far], kind="stable")[:closest_above]]
            beyond += [(i, i + 1 + j, distance[j]) for j in nearest]
    beyond = sorted(beyond, key=lambda t: (t[2], t[0], t[1]))[:closest_above]
    digest = sha256 or {}
    rows = [(ids[i], ids[j], int(d), bool(digest.get(ids[i])) and digest.get(ids[i]) == digest.get(ids[j]))
            for i, j, d in within + beyond]
    table = pd.DataFrame(rows, columns=["a", "b", "bits", "identical_bytes"])
    return table.sort_values(["bits", "a", "b"], kind="stable").reset_index(drop=True)


def near_duplicate_images(pairs: pd.DataFrame, max_bits: int = NEAR_DUPLICATE_BITS) -> list[dict[str, object]]:
    """Pairs (`hash_pairs`) within ``max_bits`` of each other: ``patients``, ``bits``, ``identical_bytes``
    (a byte-identical pair is also a duplicate group; the others are copies that byte identity misses)."""
    return [{"patients": [r.a, r.b], "bits": r.bits, "identical_bytes": r.identical_bytes}
            for r in pairs[pairs["bits"] <= max_bits].itertuples()]


def closest_distinct_pairs(pairs: pd.DataFrame, max_bits: int = NEAR_DUPLICATE_BITS) -> list[dict[str, object]]:
    """The nearest pairs beyond the threshold (`hash_pairs` with ``closest_above``): its margin, per run."""
    return [{"patients": [r.a, r.b], "bits": r.bits} for r in pairs[pairs["bits"] > max_bits].itertuples()]


def image_record_conflicts(manifest: pd.DataFrame, clinical: pd.DataFrame) -> list[dict[str, object]]:
    """Groups of byte-identical images whose records give a different sex or age: one radiograph cannot
    be two people, so the image is linked to a wrong record there. Per group: the patients with their
    sex, age and diagnosis, and what disagrees."""
    records = clinical.set_index("patient_id")
    diagnosis = manifest.set_index("patient_id")["diagnosis"]
    out = []
    for _, group in manifest.dropna(subset=["duplicate_group"]).groupby("duplicate_group"):
        ids = sorted(group["patient_id"])
        sexes = records.loc[ids, "sex"].astype(str).tolist()
        ages = records.loc[ids, "age_years"].tolist()
        disagree = [what for what, values in (("sex", sexes), ("age", ages)) if len(set(values)) > 1]
        if disagree:
            out.append({"patients": ids, "sex": sexes, "age_years": [float(a) for a in ages],
                        "diagnosis": diagnosis.loc[ids].astype(str).tolist(), "disagree": disagree})
    return out
