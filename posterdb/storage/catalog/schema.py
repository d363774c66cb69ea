"""The catalogue's schema as named, numbered migrations (append only; never edit a shipped one).

A store records the migrations applied to it in `schema_migrations`; `SCHEMA_VERSION` is the
number this code expects. To change the schema, append `Migration(N + 1, "what_it_does", SQL)`:
writers apply it on open, readers are told to run `posterdb migrate`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


MIGRATIONS: list[Migration] = [
    Migration(1, "initial_schema", """
    CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR);
    CREATE TABLE posters (
        id INTEGER PRIMARY KEY,
        sha256 VARCHAR NOT NULL UNIQUE,
        path VARCHAR NOT NULL,
        image_path VARCHAR NOT NULL,
        title VARCHAR,
        year INTEGER,
        decade INTEGER,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        format VARCHAR,
        source VARCHAR,
        added_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE TABLE poster_paths (poster_id INTEGER NOT NULL, path VARCHAR NOT NULL,
                               PRIMARY KEY (poster_id, path));
    CREATE TABLE genre_labels (
        poster_id INTEGER NOT NULL,
        genre VARCHAR NOT NULL,
        origin VARCHAR NOT NULL CHECK (origin IN ('file', 'review', 'prediction')),
        score DOUBLE,
        added_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (poster_id, genre, origin)
    );
    CREATE TABLE models (
        name VARCHAR PRIMARY KEY,
        version VARCHAR NOT NULL,
        weights_sha256 VARCHAR NOT NULL,
        dim INTEGER NOT NULL,
        table_name VARCHAR NOT NULL,
        added_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE TABLE ingest_errors (
        run_id VARCHAR NOT NULL,
        path VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        failed_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE TABLE classifiers (
        id INTEGER PRIMARY KEY,
        model_name VARCHAR NOT NULL,
        file VARCHAR NOT NULL,
        sha256 VARCHAR NOT NULL,
        n_train INTEGER NOT NULL,
        trained_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        scores JSON
    );
    INSERT INTO meta VALUES ('next_poster_id', '1'), ('generation', '0');
    """),
    # origins are checked in Python (posterdb.rules.ORIGINS), so new ones need no migration
    Migration(2, "open_label_origins_and_classifier_versions", """
    CREATE TABLE genre_labels_v2 (
        poster_id INTEGER NOT NULL,
        genre VARCHAR NOT NULL,
        origin VARCHAR NOT NULL,
        score DOUBLE,
        added_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (poster_id, genre, origin)
    );
    INSERT INTO genre_labels_v2 SELECT poster_id, genre, origin, score, added_at FROM genre_labels;
    DROP TABLE genre_labels;
    ALTER TABLE genre_labels_v2 RENAME TO genre_labels;
    ALTER TABLE classifiers ADD COLUMN format_version INTEGER;
    ALTER TABLE classifiers ADD COLUMN posterdb_version VARCHAR;
    """),
    # what was read on each poster and the film it was identified as (posterdb.reading)
    Migration(3, "poster_text_and_identification", """
CREATE TABLE poster_reads (
    poster_id INTEGER PRIMARY KEY,
    engine VARCHAR NOT NULL,
    n_lines INTEGER NOT NULL,
    text VARCHAR NOT NULL,
    text_key VARCHAR NOT NULL,
    read_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
CREATE TABLE poster_text_lines (
    poster_id INTEGER NOT NULL,
    line_no INTEGER NOT NULL,
    text VARCHAR NOT NULL,
    confidence DOUBLE NOT NULL,
    box DOUBLE[8] NOT NULL,
    PRIMARY KEY (poster_id, line_no)
);
CREATE TABLE poster_identifications (
    poster_id INTEGER PRIMARY KEY,
    status VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    film_id VARCHAR,
    title VARCHAR,
    year INTEGER,
    genres VARCHAR[],
    score DOUBLE,
    candidates INTEGER,
    error VARCHAR,
    identified_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
    """),
]
SCHEMA_VERSION = MIGRATIONS[-1].version
assert [m.version for m in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))


def id_array(ids):
    """Poster ids handed to a query, as the catalogue's INTEGER (int32) column. An id outside
    it is a UsageError naming the range (`rules.check_poster_id`), not pyarrow's overflow: no
    such poster can exist, whoever asked (CLI, page, Python API)."""
    import pyarrow as pa

    from posterdb.core.rules import MAX_POSTER_ID, check_poster_id

    ids = [int(i) for i in ids]
    for i in ids:
        if not -MAX_POSTER_ID - 1 <= i <= MAX_POSTER_ID:
            check_poster_id(i)
    return pa.array(ids, pa.int32())


def embedding_table(model_name: str) -> str:
    """`mobilenet-v2` -> `embeddings_mobilenet_v2`."""
    return "embeddings_" + re.sub(r"[^a-z0-9]+", "_", model_name.lower()).strip("_")
