"""Exceptions raised by posterdb: one hierarchy, three kinds, each with the CLI's exit code.

    UsageError    exit 2  a bad argument (unknown model, year, genre, k, missing path...)
    RefusedError  exit 3  posterdb will not do it (other model's vectors, missing weights,
                          no classifier, a store newer than the code, a busy store...)
    InputError    exit 1  an input file failed (a bad image); the run goes on where it can

Every message names the thing at fault and the reason. `UsageError` is also a `ValueError`, so
library callers that catch `ValueError` for bad arguments keep working.
"""
from __future__ import annotations

from pathlib import Path


class PosterDBError(Exception):
    """Base class: anything posterdb refuses or cannot do."""

    exit_code = 3


class UsageError(PosterDBError, ValueError):
    """A bad argument: the caller can fix it and try again."""

    exit_code = 2


class RefusedError(PosterDBError):
    """posterdb refuses, or cannot do it with what the store and the machine hold."""

    exit_code = 3


class InputError(PosterDBError):
    """An input file that failed."""

    exit_code = 1


class ImageError(InputError):
    """An input file that is not a usable poster image."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class LabelsError(UsageError):
    """A labels file that cannot be read at all (bad rows are reported, not raised)."""


class ModelMismatchError(RefusedError):
    """Vectors from a different model (or weights) than the index was built with."""


class ModelNotHeldError(RefusedError):
    """The store holds no vectors from the model asked for (the message names those it holds)."""

    @classmethod
    def naming(cls, name: str, held) -> ModelNotHeldError:
        """The error for `name`, naming the models the store does hold."""
        holds = f"it holds {', '.join(held)}" if held else "it holds no vectors yet"
        return cls(f"this store holds no vectors from model {name!r} ({holds}); ingest with "
                   f"--model {name} first, or choose a model it holds")


class WeightsNotFoundError(RefusedError):
    """Pretrained weights could not be found locally nor downloaded."""


class WeightsLoadError(RefusedError):
    """A weights file exists but is not usable for this model (corrupt, wrong keys or shapes)."""


class StoreBusyError(RefusedError):
    """The DuckDB file stayed locked by another process longer than we were willing to wait."""


class StoreError(RefusedError):
    """The store directory is missing, unreadable or inconsistent beyond repair."""


class SchemaVersionError(StoreError):
    """The store was written by a newer posterdb, or needs a migration a reader cannot apply."""


class NotTrainedError(RefusedError):
    """No trained classifier is stored for this model."""


class ClassifierFormatError(RefusedError):
    """A stored classifier was written in another format version: it must be retrained."""
