"""The DuckDB catalogue: the only place in posterdb that speaks SQL.

`Catalog` = lock-aware connections + schema check (connection.py) + queries by subject:
posters / file names / errors / classifiers (posters.py), genre labels and filters
(genre_labels.py), models and vectors (vectors.py), aggregates for info/check (reports.py),
read text and identifications (texts.py).
The schema is a list of named, numbered migrations (schema.py). Queries take an open
connection, so a caller groups several into one `read()` or one `write()` transaction.
"""
from __future__ import annotations

from ..records import PosterRecord
from ..rules import ORIGINS
from .connection import Connections
from .genre_labels import LabelQueries
from .intake import IntakeQueries
from .posters import PosterQueries
from .reports import ReportQueries
from .texts import TextQueries
from .schema import MIGRATIONS, SCHEMA_VERSION, Migration, embedding_table
from .vectors import VectorQueries


class Catalog(Connections, PosterQueries, LabelQueries, VectorQueries, ReportQueries,
              IntakeQueries, TextQueries):
    """A handle on `catalog.duckdb`; opens short-lived connections on demand."""


__all__ = ["Catalog", "MIGRATIONS", "Migration", "ORIGINS", "PosterRecord", "SCHEMA_VERSION",
           "embedding_table"]
