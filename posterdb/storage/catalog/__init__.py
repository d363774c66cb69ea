"""The DuckDB catalogue: the only place in posterdb that speaks SQL.

`Catalog` = lock-aware connections + schema check (connection.py) + queries by subject:
posters / file names / errors / classifiers (posters.py), genre labels and filters
(genre_labels.py), models and vectors (vectors.py), aggregates for info/check (reports.py),
read text and identifications (texts.py), the store's own settings (settings.py).
The schema is a list of named, numbered migrations (schema.py). Queries take an open
connection, so a caller groups several into one `read()` or one `write()` transaction.
"""
from __future__ import annotations

from posterdb.core.records import PosterRecord
from posterdb.core.rules import ORIGINS
from posterdb.storage.catalog.connection import Connections
from posterdb.storage.catalog.genre_labels import LabelQueries
from posterdb.storage.catalog.intake import IntakeQueries
from posterdb.storage.catalog.posters import PosterQueries
from posterdb.storage.catalog.reports import ReportQueries
from posterdb.storage.catalog.schema import (
    MIGRATIONS, SCHEMA_VERSION, Migration, embedding_table)
from posterdb.storage.catalog.settings import SettingQueries
from posterdb.storage.catalog.texts import TextQueries
from posterdb.storage.catalog.vectors import VectorQueries


class Catalog(Connections, PosterQueries, LabelQueries, VectorQueries, ReportQueries,
              IntakeQueries, TextQueries, SettingQueries):
    """A handle on `catalog.duckdb`; opens short-lived connections on demand."""


__all__ = ["Catalog", "MIGRATIONS", "Migration", "ORIGINS", "PosterRecord", "SCHEMA_VERSION",
           "embedding_table"]
