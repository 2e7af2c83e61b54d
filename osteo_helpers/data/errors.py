"""Errors about raw data that cannot be used; every message names the file (and the row and column)."""

from __future__ import annotations

from ..config import UsageError


class DataValidationError(ValueError):
    """Raw data that cannot be interpreted; the message names the file, row and column."""


class ImageReadError(DataValidationError):
    """An image file that cannot be read or decoded: the one image-read error of the project."""


class DatasetLayoutError(DataValidationError, UsageError):
    """A dataset folder without its class folders or without images: nothing to analyse (exit 2)."""


class TableColumnError(DataValidationError, UsageError):
    """A cohort table that lacks a column its spec names, or holds one it must not: nothing to analyse (exit 2)."""
