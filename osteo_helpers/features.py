"""Frozen pretrained image features: computed once per image and view, cached by content.

The image arms of the CPU profiles do not train a network on pixels. A frozen ImageNet encoder
(EfficientNet-Lite, `models.efficientnet_lite`) turns every image into one vector, once; each fold
then fits a light head on those vectors (`arms.features`). A `FeatureRecipe` names what is
computed: the encoder, the resolution, the declared test-time views (the letterboxed image and its
mirror image) and the pooling. Each view's vector is cached under a key of everything that made
it (the image's SHA-256, the encoder and the SHA-256 of its weights file, the resolution, the view,
the decoder, torch and the architecture's package), verified like the decoded images (`fileio.ArrayStore`); the vectors
of a recipe's views are averaged.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import progress
from .config import LITE_POOLINGS
from .fileio import ArrayStore, sha256_file
from .folders import cache_dir
from .threads import fit_threads

#: test-time views a recipe may declare: the letterboxed image, and the same image mirrored left-right
VIEWS = ("image", "mirror")
#: bump when the computation of a vector changes, so cached vectors of the old computation are never reused
#: (2: one image per forward pass)
FEATURE_VERSION = 2
#: images per forward pass: one. On the CPU a convolution's result depends on the batch's size (another kernel;
#: vectors of a batch of 16 and of single images differ by 1e-6), so a vector must not depend on which images
#: were computed with it (one damaged cache entry computed again, a patient scored alone); and one image at a
#: time was also faster here (32 images of 260 px: 2.8 s against 5.4 s in batches of 16, 2026-12-07)
BATCH = 1
#: images decoded and encoded between two progress checks (and cache writes)
CHUNK = 32
#: the column of the cohort rows that holds each row's feature vector (float32)
COLUMN = "features"


@dataclass(frozen=True)
class FeatureRecipe:
    """What the frozen encoder computes for each image: configuration only (see the module docstring)."""

    encoder: str = "efficientnet_lite0"
    size: int = 320
    views: tuple[str, ...] = ("image", "mirror")
    pooling: str = "mean"

    def __post_init__(self) -> None:
        unknown = [v for v in self.views if v not in VIEWS]
        if unknown or not self.views:
            raise ValueError(f"feature views {self.views!r}: each must be one of {', '.join(VIEWS)}")

        if self.pooling not in LITE_POOLINGS:
            raise ValueError(f"feature pooling {self.pooling!r}: one of {', '.join(LITE_POOLINGS)}")

    @classmethod
    def of(cls, profile) -> FeatureRecipe:
        """The recipe a profile declares (its ``feature_*`` fields)."""
        return cls(profile.feature_encoder, profile.feature_size, tuple(profile.feature_views), profile.feature_pooling)

    def describe(self) -> str:
        """The recipe in words, for captions and the model card."""
        views = " and ".join({"image": "the image", "mirror": "its mirror image"}[v] for v in self.views)
        return (f"{self.encoder.replace('_', '-')} with ImageNet weights, frozen; {self.pooling}-pooled features at "
                f"{self.size} px, averaged over {views}")


@functools.cache
def encoder_identity(encoder: str) -> dict[str, str]:
    """Everything about the frozen encoder that could change its vectors: its name, the SHA-256 of its
    weights file, and the versions of torch and of the architecture's package. Recorded with every result
    and bundle."""
    import torch  # deferred: imports torch

    from .models import lite_weights_file  # deferred: imports tqdm

    weights = lite_weights_file(encoder)
    return {"encoder": encoder, "weights": "imagenet", "weights_file": weights.name,
            "weights_sha256": sha256_file(weights), "torch": torch.__version__,
            "architecture": f"efficientnet-lite-pytorch {importlib.metadata.version('efficientnet-lite-pytorch')}"}


def view_key(recipe: FeatureRecipe, view: str, threads: int | None = None) -> str:
    """The cache folder of one view of a recipe: a hash of everything that made its vectors (the torch threads
    too: on the CPU they move the last digits)."""
    from .images import decoder_id  # deferred: imports scipy, PIL and tqdm

    made_by = {**encoder_identity(recipe.encoder), "size": recipe.size, "view": view, "pooling": recipe.pooling,
               "decoder": decoder_id(), "threads": fit_threads(threads), "version": FEATURE_VERSION}
    digest = hashlib.sha256(json.dumps(made_by, sort_keys=True).encode()).hexdigest()[:16]
    return f"{recipe.encoder}-{recipe.size}px-{view}-{digest}"


@functools.cache
def frozen_encoder(encoder: str, size: int):
    """The frozen ImageNet encoder for inputs of ``size`` px (its "same" padding is computed for them), loaded
    once per process."""
    from .models import efficientnet_lite  # deferred: imports torch and tqdm

    model = efficientnet_lite(encoder, weights="imagenet", image_size=size)
    model.requires_grad_(False)
    return model


def encode(images: np.ndarray, encoder: str, view: str, pooling: str = "mean", threads: int | None = None
           ) -> np.ndarray:
    """Feature vectors (N, D) float32 of uint8 grey images (N, S, S) in one view, by the frozen encoder."""
    import torch  # deferred: imports torch

    from .models import lite_input, pooled_features  # deferred: imports torch and tqdm

    model = frozen_encoder(encoder, images.shape[-1])
    before = torch.get_num_threads()
    torch.set_num_threads(fit_threads(threads))
    out = []
    try:
        with torch.no_grad():
            for start in range(0, len(images), BATCH):
                x = torch.from_numpy(np.ascontiguousarray(images[start:start + BATCH]))[:, None]
                if view == "mirror":
                    x = x.flip(-1)
                out.append(pooled_features(model, lite_input(x), pooling).numpy())
    finally:
        torch.set_num_threads(before)  # the caller's threads, whatever it set (a prediction, a test)
    return np.concatenate(out).astype(np.float32)


def vectors(images: np.ndarray, recipe: FeatureRecipe, threads: int | None = None) -> np.ndarray:
    """The recipe's vectors of letterboxed images (N, S, S) at its size, averaged over its views, without
    the cache (a new patient's image, the bundle's self-check)."""
    return np.mean([encode(images, recipe.encoder, v, recipe.pooling, threads) for v in recipe.views], axis=0)


def feature_matrix(rows: pd.DataFrame, recipe: FeatureRecipe, data_dir: str | os.PathLike,
                   cache: str | os.PathLike | None = None, threads: int | None = None) -> np.ndarray:
    """The recipe's vector (N, D) of every row with an image, averaged over its views; computed once per image
    and view, then read from the cache (``cache``: default, the project's cache folder)."""
    from .images import ImageCache  # deferred: imports scipy, PIL and tqdm

    root = cache_dir(cache, data_dir) / "features"
    shas = rows["image_sha256"].tolist()
    paths = [Path(data_dir) / rel for rel in rows["image_path"]]
    width = feature_width(recipe)
    total = np.zeros((len(rows), width), np.float64)
    for view in recipe.views:
        store = ArrayStore(root / view_key(recipe, view, threads))
        found = [store.get(sha, (width,), "float32") for sha in shas]
        missing = sorted({i for i, f in enumerate(found) if f is None}, key=lambda i: shas[i])
        unique = list(dict.fromkeys(shas[i] for i in missing))
        if unique:
            images = ImageCache(cache_dir(cache, data_dir), recipe.size)
            first = {sha: next(i for i in missing if shas[i] == sha) for sha in unique}
            for chunk in progress.track(_chunks(unique, CHUNK), f"features {recipe.encoder} {recipe.size}px "
                                        f"({view}): {len(unique)} images", total=-(-len(unique) // CHUNK)):
                pixels = np.stack([images.get(paths[first[sha]], sha) for sha in chunk])
                for sha, vector in zip(chunk, encode(pixels, recipe.encoder, view, recipe.pooling, threads),
                                       strict=True):
                    store.put(sha, vector)
            found = [store.get(sha, (width,), "float32") for sha in shas]
        total += np.stack(found)
    return (total / len(recipe.views)).astype(np.float32)


@functools.cache
def _width(encoder: str, pooling: str) -> int:
    return encode(np.zeros((1, 64, 64), np.uint8), encoder, "image", pooling, threads=1).shape[1]


def feature_width(recipe: FeatureRecipe) -> int:
    """The length of the recipe's vectors (1280 for lite0's head; more with the multiscale pooling)."""
    return _width(recipe.encoder, recipe.pooling)


def _chunks(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def with_features(rows: pd.DataFrame, recipe: FeatureRecipe, data_dir: str | os.PathLike,
                  cache: str | os.PathLike | None = None, threads: int | None = None) -> pd.DataFrame:
    """The rows with a ``features`` column: each row's vector (what the feature arms fit on)."""
    matrix = feature_matrix(rows, recipe, data_dir, cache, threads)
    return rows.assign(**{COLUMN: list(matrix)})


def recipe_record(recipe: FeatureRecipe) -> dict:
    """The recipe and its encoder's identity, as recorded in provenance and bundles."""
    return {**asdict(recipe), **encoder_identity(recipe.encoder)}
