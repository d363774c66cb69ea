"""Exceptions raised by posterdb. Each names the thing at fault and the reason."""
from __future__ import annotations

from pathlib import Path


class PosterDBError(Exception):
    """Base class: anything posterdb refuses or cannot do."""

    exit_code = 3


class ImageError(PosterDBError):
    """An input file that is not a usable poster image."""

    exit_code = 1

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class LabelsError(PosterDBError):
    """A labels file that cannot be read at all (bad rows are reported, not raised)."""

    exit_code = 2


class ModelMismatchError(PosterDBError):
    """Vectors from a different model (or weights) than the index was built with."""


class WeightsNotFoundError(PosterDBError):
    """Pretrained weights could not be found locally nor downloaded."""


class WeightsLoadError(PosterDBError):
    """A weights file exists but is not usable for this model (corrupt, wrong keys or shapes)."""


class StoreBusyError(PosterDBError):
    """The DuckDB file stayed locked by another process longer than we were willing to wait."""


class StoreError(PosterDBError):
    """The store directory is missing, unreadable or inconsistent beyond repair."""


class NotTrainedError(PosterDBError):
    """No trained classifier is stored for this model."""
