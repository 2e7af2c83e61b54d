"""Knee images as clinics store them: one reader per format behind `reader_for`.

* `PillowReader`: JPEG, PNG, TIFF, BMP.
* `DicomReader`: DICOM through pydicom and its pixel-data plugins (pylibjpeg, libjpeg, openjpeg).
  A single JPEG Baseline frame with nothing to apply (MONOCHROME2 or colour, no rescale, no VOI)
  is decoded by the Pillow path above, so a JPEG and its DICOM encapsulation give the same pixels.
  Everything else goes through ``pixel_array``, the modality LUT (rescale slope and intercept) and
  the VOI LUT or window, and is normalised the same way every time: the VOI output range to [0, 1]
  when the file has a VOI, else the image's own range; MONOCHROME1 is inverted afterwards. 8-bit
  colour pixels become grey by Pillow's conversion, as a colour JPEG or PNG of them does.
  Stored values above ``BitsStored`` are refused (`ImageReadError`), never masked: pydicom clears
  those bits, which wraps parts of a 16-bit image labelled 12-bit to white; only a file whose high
  bits hold a (retired) embedded overlay plane is masked, as the standard says.

Every reader decodes at full resolution: the letterbox (`images.decode_letterbox`) resamples the
decoded pixels one way for every container. Only the data check's thumbnail (``draft``) lets a
JPEG decode at a reduced scale.

Every reader answers the same questions: the header (size, mode, pixel spacing), the grey image
for the letterbox, the grey image at native resolution in [0, 1], the colour image of a file with
colour channels (the knee check of ``predict`` refuses colour pictures), a content checksum, and why
the file cannot be decoded. Errors are `ImageReadError`, one line naming the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..fileio import sha256_file
from .errors import ImageReadError
from .plausibility import too_many_pixels

PILLOW_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
IMAGE_SUFFIXES = PILLOW_SUFFIXES | DICOM_SUFFIXES
#: ITU-R BT.601 luminance weights of R, G and B, applied in float (no 8-bit rounding)
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float64)
#: Pillow modes of one channel (grey levels of any depth, bilevel)
ONE_CHANNEL_MODES = frozenset({"1", "L", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"})
#: the transfer syntax whose frames Pillow decodes exactly as it decodes a .jpg file
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
#: DICOM attributes that change the pixels a file decodes to (part of its content checksum)
DECODING_ATTRIBUTES = ("Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated",
                       "BitsStored", "HighBit", "PixelRepresentation", "PlanarConfiguration", "NumberOfFrames",
                       "RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth", "VOILUTFunction")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def check_pixels(name: str, width: int, height: int) -> None:
    """ImageReadError naming the file when a header is above the pixel limit: it is never decoded
    (a decompression bomb: a few bytes that would decode to gigabytes)."""
    too_many = too_many_pixels(width, height)
    if too_many:
        raise ImageReadError(f"{name}: {too_many}")


def pil_grayscale(source: str | os.PathLike | io.BytesIO, draft: int | None, name: str) -> Image.Image:
    """A Pillow-readable image as 8-bit grey, EXIF orientation honoured; ``draft`` lets JPEG decode at a
    reduced scale (DCT scaling, several times faster) when only a ``draft`` px image is needed."""
    return _pil_decode(source, draft, name, "L")


def pil_colour(source: str | os.PathLike | io.BytesIO, draft: int | None, name: str) -> Image.Image | None:
    """A Pillow-readable image with colour channels as 8-bit RGB (EXIF orientation honoured, ``draft`` as
    in `pil_grayscale`); None for a one-channel image, whose pixels cannot hold colour."""
    return _pil_decode(source, draft, name, "RGB")


def _pil_decode(source: str | os.PathLike | io.BytesIO, draft: int | None, name: str, mode: str) -> Image.Image | None:
    try:
        with Image.open(source) as im:
            check_pixels(name, im.width, im.height)
            if mode == "RGB" and im.mode in ONE_CHANNEL_MODES:
                return None
            if draft is not None:
                im.draft(mode, (draft, draft))
            ImageOps.exif_transpose(im, in_place=True)  # not a copy: convert makes the one that outlives the file
            im = im.convert(mode)
            im.load()
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"{name}: cannot decode image ({_one_line(exc)})") from exc
    return im


def pil_float(source: str | os.PathLike | io.BytesIO, name: str) -> np.ndarray:
    """A Pillow-readable image at native resolution as float in [0, 1]: RGB(A) to luminance in float,
    8- and 16-bit grey levels scaled by their full range, EXIF orientation honoured."""
    try:
        with Image.open(source) as im:
            check_pixels(name, im.width, im.height)
            ImageOps.exif_transpose(im, in_place=True)
            im.load()
            mode = im.mode
            if mode in ("RGB", "RGBA", "CMYK", "YCbCr", "P", "LA", "PA"):
                arr = np.asarray(im.convert("RGB"), dtype=np.float64) @ LUMA_WEIGHTS / 255.0
            elif mode in ("L", "1"):
                arr = np.asarray(im.convert("L"), dtype=np.float64) / 255.0
            elif mode.startswith("I;16"):
                arr = np.asarray(im, dtype=np.float64) / 65535.0
            elif mode in ("I", "F"):
                arr = np.asarray(im, dtype=np.float64)
                lo, hi = float(arr.min()), float(arr.max())
                arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
            else:
                arr = np.asarray(im.convert("L"), dtype=np.float64) / 255.0
    except ImageReadError:
        raise
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"cannot read image {name!r}: {_one_line(exc)}") from exc
    return arr


class PillowReader:
    """JPEG, PNG, TIFF and BMP files through Pillow."""

    format = "pillow"

    def header(self, path: Path) -> dict[str, Any]:
        try:
            with Image.open(path) as im:
                return {"width": im.width, "height": im.height, "mode": im.mode, "format": im.format,
                        "pixel_spacing_row_mm": np.nan, "pixel_spacing_col_mm": np.nan}
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
            raise ImageReadError(f"{path}: not a readable image ({_one_line(exc)})") from exc

    def grayscale(self, path: Path, draft: int | None = None) -> Image.Image:
        return pil_grayscale(path, draft, str(path))

    def grayscale_float(self, path: Path) -> np.ndarray:
        return pil_float(path, os.fspath(path))

    def colour(self, path: Path, draft: int | None = None) -> Image.Image | None:
        return pil_colour(path, draft, str(path))

    def content_sha256(self, path: Path) -> str:
        return sha256_file(path)


class _Heard(logging.Handler):
    """What pydicom logs in the calling thread (the readers run in threads): it reads a truncated file
    without an error, logs "End of file reached before delimiter" and returns what it read."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread, self.messages = threading.get_ident(), []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


class DicomReader:
    """DICOM files through pydicom (compressed transfer syntaxes through the pylibjpeg plugins)."""

    format = "dicom"

    def _dataset(self, path: Path, pixels: bool = True):
        import pydicom  # deferred: imports pydicom

        heard, logger = _Heard(), logging.getLogger("pydicom")
        logger.addHandler(heard)
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=not pixels)
        except Exception as exc:  # pydicom raises many types for a file that is not (all) DICOM
            raise ImageReadError(f"{path}: not a readable DICOM file ({_one_line(exc)})") from exc
        finally:
            logger.removeHandler(heard)
        ended = next((m for m in heard.messages if m.startswith("End of file reached")), None)
        if ended is not None:
            raise ImageReadError(f"{path}: DICOM file is truncated: {ended.split(' in file ')[0]}")
        missing = [k for k in ("Rows", "Columns", "PhotometricInterpretation") if k not in ds]
        if pixels and "PixelData" not in ds:
            missing.append("PixelData")
        if missing:
            raise ImageReadError(f"{path}: DICOM file without {', '.join(missing)}: not an image")
        if int(ds.get("NumberOfFrames", 1) or 1) != 1:
            raise ImageReadError(f"{path}: DICOM file with {ds.NumberOfFrames} frames; a radiograph is one frame")
        check_pixels(str(path), int(ds.Columns), int(ds.Rows))
        return ds

    @staticmethod
    def _jpeg_frame(ds) -> bytes | None:
        """The JPEG bitstream when Pillow's path decodes this file exactly (see the module docstring)."""
        syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", ""))
        plain = (float(ds.get("RescaleSlope", 1) or 1) == 1 and float(ds.get("RescaleIntercept", 0) or 0) == 0
                 and "VOILUTSequence" not in ds and "WindowCenter" not in ds and "ModalityLUTSequence" not in ds)
        if syntax != JPEG_BASELINE or not plain or ds.PhotometricInterpretation == "MONOCHROME1":
            return None
        from pydicom.encaps import generate_frames  # deferred: imports pydicom

        return next(generate_frames(ds.PixelData, number_of_frames=1))

    def header(self, path: Path) -> dict[str, Any]:
        ds = self._dataset(path, pixels=False)
        spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
        row_mm, col_mm = (float(spacing[0]), float(spacing[1])) if spacing and len(spacing) == 2 else (np.nan,) * 2
        samples, bits = int(ds.get("SamplesPerPixel", 1)), int(ds.get("BitsStored", 8))
        mode = "RGB" if samples == 3 else "L" if bits <= 8 else "I;16"
        if str(getattr(ds.file_meta, "TransferSyntaxUID", "")) == JPEG_BASELINE:
            full = self._dataset(path)
            frame = self._jpeg_frame(full)
            if frame is not None:  # the mode Pillow sees, as for the JPEG file itself
                with Image.open(io.BytesIO(frame)) as im:
                    mode = im.mode
        return {"width": int(ds.Columns), "height": int(ds.Rows), "mode": mode, "format": "DICOM",
                "pixel_spacing_row_mm": row_mm, "pixel_spacing_col_mm": col_mm}

    def _pixels(self, path: Path, ds) -> np.ndarray:
        """The stored pixel values; ImageReadError when they use bits above BitsStored (see the module
        docstring): masking them, as pydicom does, would change the image."""
        allocated, stored = int(ds.get("BitsAllocated", 8)), int(ds.get("BitsStored", 8))
        check = stored < allocated and not _embedded_overlay(ds)
        try:
            if check:
                ds.pixel_array_options(correct_unused_bits=False)
            arr = ds.pixel_array
        except Exception as exc:  # pydicom and its plugins raise many types for undecodable pixel data
            raise ImageReadError(f"{path}: DICOM pixel data cannot be decoded ({_one_line(exc)})") from exc
        if not check:
            return arr
        shift = arr.dtype.itemsize * 8 - stored
        masked = np.right_shift(np.left_shift(arr, shift), shift)  # pydicom's correction: clear (or sign-extend)
        excess = masked != arr
        if excess.any():
            raise ImageReadError(f"{path}: stored pixel values exceed BitsStored {stored} ({excess.mean():.0%} of "
                                 f"pixels use higher bits; largest stored value {int(arr.max())}): the header or "
                                 "the pixel data is wrong, and masking them would change the image; correct "
                                 "BitsStored/HighBit or export the image again")
        return arr

    def _float(self, path: Path, ds) -> np.ndarray:
        from pydicom.pixels import apply_modality_lut, apply_voi_lut  # deferred: imports pydicom

        arr = self._pixels(path, ds)
        if int(ds.get("SamplesPerPixel", 1)) == 3:
            bits = int(ds.get("BitsStored", 8))
            return arr.astype(np.float64) @ LUMA_WEIGHTS / (2**bits - 1)
        values = apply_modality_lut(arr, ds)  # integers stay integers: a VOI LUT indexes by them
        low, high = voi_range(ds)
        if low is not None:
            values = apply_voi_lut(values, ds, index=0).astype(np.float64)
        else:
            values = values.astype(np.float64)
            low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
        scaled = np.clip(scaled, 0.0, 1.0)
        return 1.0 - scaled if ds.PhotometricInterpretation == "MONOCHROME1" else scaled

    def grayscale(self, path: Path, draft: int | None = None) -> Image.Image:
        ds = self._dataset(path)
        frame = self._jpeg_frame(ds)
        if frame is not None:
            return pil_grayscale(io.BytesIO(frame), draft, str(path))
        if int(ds.get("SamplesPerPixel", 1)) == 3 and int(ds.get("BitsAllocated", 8)) == 8:
            return Image.fromarray(self._pixels(path, ds).astype(np.uint8), mode="RGB").convert("L")
        return Image.fromarray(np.rint(self._float(path, ds) * 255).astype(np.uint8), mode="L")

    def grayscale_float(self, path: Path) -> np.ndarray:
        ds = self._dataset(path)
        frame = self._jpeg_frame(ds)
        return pil_float(io.BytesIO(frame), str(path)) if frame is not None else self._float(path, ds)

    def colour(self, path: Path, draft: int | None = None) -> Image.Image | None:
        ds = self._dataset(path)
        frame = self._jpeg_frame(ds)
        if frame is not None:
            return pil_colour(io.BytesIO(frame), draft, str(path))
        if int(ds.get("SamplesPerPixel", 1)) != 3:
            return None
        arr = self._pixels(path, ds)  # pydicom returns RGB, whatever the colour space stored
        scale = 255 / (2 ** int(ds.get("BitsStored", 8)) - 1)
        return Image.fromarray(np.rint(arr * scale).astype(np.uint8), mode="RGB")

    def content_sha256(self, path: Path) -> str:
        """SHA-256 of what decides the pixels (the decoding attributes and the pixel data), not of the
        file: two files of one image under two patients' tags are the same image."""
        ds = self._dataset(path)
        attrs = {k: str(ds.get(k)) for k in DECODING_ATTRIBUTES if k in ds}
        attrs["TransferSyntaxUID"] = str(getattr(ds.file_meta, "TransferSyntaxUID", ""))
        digest = hashlib.sha256(json.dumps(attrs, sort_keys=True).encode())
        for seq in ("VOILUTSequence", "ModalityLUTSequence"):
            for item in ds.get(seq) or []:
                digest.update(str(list(item.LUTDescriptor)).encode())
                digest.update(bytes(item.LUTData) if isinstance(item.LUTData, bytes) else str(item.LUTData).encode())
        digest.update(ds.PixelData)
        return digest.hexdigest()


def _embedded_overlay(ds) -> bool:
    """Whether an overlay plane lives in the pixel data's unused high bits (retired DICOM: an overlay group
    with an OverlayBitPosition and no OverlayData of its own): then masking those bits is right."""
    for group in range(0x6000, 0x6020, 2):
        if (group << 16 | 0x0102) in ds and (group << 16 | 0x3000) not in ds:
            return True
    return False


def voi_range(ds) -> tuple[float | None, float | None]:
    """The output range of the file's VOI transform (LUT or window), as pydicom applies it; (None, None)
    without a VOI. Normalising by it keeps a window's meaning: what the window clips stays clipped."""
    if ds.get("VOILUTSequence"):
        return 0.0, float(2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1)
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return None, None
    if ds.get("ModalityLUTSequence"):
        low, high = 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    elif int(ds.get("PixelRepresentation", 0)) == 0:
        low, high = 0.0, float(2 ** int(ds.BitsStored) - 1)
    else:
        low, high = -float(2 ** (int(ds.BitsStored) - 1)), float(2 ** (int(ds.BitsStored) - 1) - 1)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        low, high = low * float(slope) + float(intercept), high * float(slope) + float(intercept)
    return low, high


def is_dicom(path: str | os.PathLike) -> bool:
    """A .dcm/.dicom file, or any file with the DICOM preamble ('DICM' at byte 128)."""
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    if path.suffix.lower() in PILLOW_SUFFIXES:
        return False
    try:
        with open(path, "rb") as fh:
            return fh.read(132)[128:] == b"DICM"
    except OSError:
        return False


_PILLOW, _DICOM = PillowReader(), DicomReader()


def reader_for(path: str | os.PathLike) -> PillowReader | DicomReader:
    """The reader of a file's format."""
    return _DICOM if is_dicom(path) else _PILLOW


def image_header(path: str | os.PathLike) -> dict[str, Any]:
    """Size, mode, format and pixel spacing (mm; NaN where the file does not say) from the header."""
    return reader_for(path).header(Path(path))


def open_grayscale(path: str | os.PathLike, draft: int | None = None) -> Image.Image:
    """The image as 8-bit grey (Pillow 'L'), whatever its format: what the letterbox resizes."""
    return reader_for(path).grayscale(Path(path), draft)


def open_colour(path: str | os.PathLike, draft: int | None = None) -> Image.Image | None:
    """The image as 8-bit RGB when the file has colour channels (None when it has one), whatever its format."""
    return reader_for(path).colour(Path(path), draft)


def read_grayscale(path: str | os.PathLike) -> np.ndarray:
    """The image at native resolution as float32 in [0, 1], whatever its format (the biomarkers)."""
    p = Path(path)
    arr = reader_for(p).grayscale_float(p)
    if arr.ndim != 2 or arr.size == 0:
        raise ImageReadError(f"cannot read image {os.fspath(p)!r}: unexpected shape {arr.shape}")
    return np.clip(arr, 0.0, 1.0).astype(np.float32)


def image_sha256(path: str | os.PathLike) -> str:
    """The content checksum that identifies an image (the file's SHA-256; for DICOM, its pixels')."""
    return reader_for(path).content_sha256(Path(path))


def pixel_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of the decoded picture (`open_grayscale`: 8-bit grey at full resolution, with its size): a JPEG,
    a PNG and a DICOM of one picture share it, whatever their bytes or tags. What the folds are ordered by
    and what a saved model records of its training images (`images.PixelHashes` caches it)."""
    return pixel_digest(open_grayscale(path))


def pixel_digest(image: Image.Image) -> str:
    """`pixel_sha256` of a picture already decoded by `open_grayscale`."""
    array = np.asarray(image, dtype=np.uint8)
    digest = hashlib.sha256(f"{array.shape[0]}x{array.shape[1]}:".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()
