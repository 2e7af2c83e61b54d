"""Image decoding and its cache, and the rows a model scores on a cohort (`cohort_rows`, images included).

Each radiograph is decoded once (at full resolution, whatever its container) into its decoded-pixel checksum
and a grayscale, aspect-preserving, square-padded uint8 array at every size a study needs, keyed by the file's
SHA-256; later runs read the cache.
The image biomarkers measure at native resolution instead: `load_grayscale` reads a file and
`as_grayscale` converts an array, with the same luminance weights.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import PIL
from PIL import Image
from tqdm.auto import tqdm

from .data.cohort import Cohort
from .data.errors import ImageReadError
from .data.image_readers import LUMA_WEIGHTS, open_grayscale, pixel_digest, read_grayscale
from .data.manifest import modelling_table
from .fileio import ArrayStore, append_index, read_index
from .folders import cache_dir
from .progress import show_progress

#: Bump whenever decode_letterbox's output changes: caches made by another decoder are then never reused.
#: 2: every container decoded at full resolution and resampled alike (1 decoded JPEG at a reduced DCT scale).
DECODER_VERSION = 2
#: Pillow's reducing_gap: the decoded image is first shrunk by an integer factor (a box filter) while it
#: stays at least 3 times the target size, then resampled with Lanczos: what Pillow documents as close to a
#: fair Lanczos resampling, at a fraction of its cost on 2,000 px radiographs. It acts on decoded pixels,
#: so it is the same for a JPEG, a PNG and a DICOM of one picture (benchmarks/README.md has the cost).
REDUCING_GAP = 3.0


def decoder_id() -> str:
    """Names the decoder that made a cached array: this module's DECODER_VERSION and the Pillow release."""
    return f"decoder{DECODER_VERSION}-pillow{PIL.__version__}"


def decode_letterbox(path: Path, size: int) -> np.ndarray:
    """Decode to grayscale at full resolution (any format `image_readers` reads), resize keeping the aspect
    ratio (`REDUCING_GAP`), pad to size x size (uint8): the same picture gives the same array whatever its file."""
    return letterbox(open_grayscale(path), size)


def letterbox(im: Image.Image, size: int) -> np.ndarray:
    """`decode_letterbox` of a picture already decoded by `image_readers.open_grayscale`."""
    scale = size / max(im.size)
    new = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    im = im.resize(new, Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)
    canvas = Image.new("L", (size, size), 0)
    canvas.paste(im, ((size - new[0]) // 2, (size - new[1]) // 2))
    return np.asarray(canvas, dtype=np.uint8)


def load_grayscale(path: str | os.PathLike) -> np.ndarray:
    """Read an image at native resolution as float32 in [0, 1] (`image_readers.read_grayscale`).

    RGB(A) is converted to luminance (ITU-R BT.601 weights, computed in float,
    no 8-bit rounding); 8- and 16-bit grey levels are scaled by their full
    range; DICOM through its modality and VOI LUTs.  EXIF orientation is honoured.
    Raises :class:`ImageReadError` naming the file when it cannot be read.
    """
    return read_grayscale(path)


def as_grayscale(image: np.ndarray) -> np.ndarray:
    """Any 2-D grey / 3-channel array -> float64 2-D array in [0, 1], so the biomarkers take arrays as files."""
    arr = np.asarray(image)
    if arr.ndim == 2 and arr.dtype.kind == "f":
        return arr  # no copy: callers never write into it
    scale = float(np.iinfo(arr.dtype).max) if arr.dtype.kind in "ui" else 1.0
    img = arr.astype(np.float64) / scale
    if img.ndim == 3 and img.shape[2] in (3, 4):
        img = img[..., :3] @ LUMA_WEIGHTS
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {arr.shape}")
    if not np.all(np.isfinite(img)):
        img = np.nan_to_num(img)
    return img


class PixelHashes:
    """Each image's decoded-pixel checksum (`image_readers.pixel_sha256`), computed once per image and decoder
    and kept in ``<cache>/pixel-sha256/<decoder>/index.tsv`` by the image's content checksum: decoding every
    image of a cohort at full resolution costs seconds, and every study of the cohort needs them. The
    decode that makes a checksum also fills the letterboxes asked for, so that a picture is decoded once for
    all of them (a 2,000 px radiograph takes 10-20 ms to decode, its letterbox 2-3 ms to resample)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "pixel-sha256" / decoder_id()
        self.root.mkdir(parents=True, exist_ok=True)
        self.index = read_index(self.root / ArrayStore.INDEX)

    def get(self, image_path: Path, sha256: str, letterboxes: tuple[ImageCache, ...] = ()) -> str:
        """The checksum of one image; the ``letterboxes`` caches that lack the image get it from the same decode."""
        lacking = [cache for cache in letterboxes if not cache.holds(sha256)]
        if sha256 in self.index and not lacking:
            return self.index[sha256]
        decoded = open_grayscale(image_path)
        for cache in lacking:
            cache.put(sha256, letterbox(decoded, cache.size))
        if sha256 not in self.index:
            self.index[sha256] = pixel_digest(decoded)
            append_index(self.root / ArrayStore.INDEX, sha256, self.index[sha256])
        return self.index[sha256]

    def of(self, table: pd.DataFrame, data_dir: Path, letterboxes: tuple[ImageCache, ...] = ()) -> list[str | None]:
        """The checksum of every row's image (None for a row without one), aligned with ``table``."""
        return [self.get(Path(data_dir) / rel, sha, letterboxes) if isinstance(rel, str) else None
                for rel, sha in zip(table["image_path"], table["image_sha256"], strict=True)]


class ImageCache:
    """Decoded images on disk, keyed by checksum, size and decoder: decode once, read many times.

    Each entry ``<image sha256>.npy`` is verified against the SHA-256 recorded when it was written
    (`fileio.ArrayStore`): an entry that changed (or was never recorded) is decoded again from the image
    and recorded anew, with a one-line note naming it when it had changed.
    """

    def __init__(self, root: Path, size: int) -> None:
        self.size = size
        self.store = ArrayStore(Path(root) / f"letterbox-{size}" / decoder_id())
        self.root = self.store.root

    def path_for(self, sha256: str) -> Path:
        return self.store.path_for(sha256)

    def get(self, image_path: Path, sha256: str) -> np.ndarray:
        """The letterboxed image; a cached one is memory-mapped (read-only), so it costs no heap memory."""
        array = self.store.get(sha256, (self.size, self.size), "uint8")
        if array is None:
            array = self.put(sha256, decode_letterbox(image_path, self.size))
        return array

    def holds(self, sha256: str) -> bool:
        """Whether an entry was recorded (`get` still verifies it, and decodes again should it have changed)."""
        return self.path_for(sha256).name in self.store.index and self.path_for(sha256).is_file()

    def put(self, sha256: str, array: np.ndarray) -> np.ndarray:
        return self.store.put(sha256, array)

    def load_all(self, manifest: pd.DataFrame, data_dir: Path, progress: bool = True) -> np.ndarray:
        """Stack the images of a manifest (rows with an image) into (N, size, size) uint8."""
        rows = manifest[manifest["image_path"].notna()]
        out = np.empty((len(rows), self.size, self.size), dtype=np.uint8)
        for i, (rel, sha) in enumerate(tqdm(list(zip(rows["image_path"], rows["image_sha256"], strict=False)),
                                            desc=f"images {self.size}px", disable=not show_progress(progress),
                                            leave=False)):
            out[i] = self.get(Path(data_dir) / rel, sha)
        return out


def cohort_rows(cohort: Cohort, image_size: int, cache: str | os.PathLike | None = None,
                progress: bool = False) -> pd.DataFrame:
    """The rows a model scores on a cohort: every table row: ``patient_id``, ``person_id``, ``source_row``,
    ``site`` / ``batch`` / ``knee_side`` / ``view`` where the spec names them, every canonical input the
    cohort has, ``diagnosis``, ``label_3class``, ``label_binary``, ``t_score``, ``split_group``, ``image``
    (the letterboxed ``image_size`` px uint8 array, from the on-disk cache) and ``pixel_sha256`` (the
    checksum of its decoded pixels). A row without an image to score keeps its place, with ``image`` None
    and ``image_problem`` saying why (the table names none, the file is not there, it cannot be decoded):
    a validation refuses it by name, never drops it.
    """
    table = modelling_table(cohort.manifest(strict=False), cohort.clinical, every_row=True).reset_index(drop=True)
    root = cache_dir(cache, cohort.root)
    letterboxes, checksums = ImageCache(root, image_size), PixelHashes(root)
    images, pixels, problems = [], [], []
    for rec in tqdm(table.to_dict("records"), desc=f"images {image_size}px", disable=not show_progress(progress),
                    leave=False):
        image = checksum = problem = None
        if isinstance(rec["image_path"], str):
            path = cohort.root / rec["image_path"]
            try:
                checksum = checksums.get(path, rec["image_sha256"], (letterboxes,))
                image = letterboxes.get(path, rec["image_sha256"])
            except ImageReadError as exc:
                problem = str(exc).removeprefix(f"{path}: ")
        else:
            problem = cohort.missing_image(rec["patient_id"])
        images.append(image)
        pixels.append(checksum)
        problems.append(problem)
    return table.assign(image=images, pixel_sha256=pixels, image_problem=problems)
