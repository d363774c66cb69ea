"""Aggregate queries for `posterdb info` and `posterdb check`."""
from __future__ import annotations

import numpy as np

from posterdb.core.genres import GENRES
from posterdb.storage.catalog.genre_labels import LABELS_SQL
from posterdb.storage.catalog.schema import embedding_table


class ReportQueries:
    """Mixed into `Catalog`; every method takes the open connection first."""

    @classmethod
    def info_counts(cls, con) -> dict:
        """Counts by decade, genre (labels and predictions), labelled, reviewed, errors, vectors."""
        one = lambda sql: con.execute(sql).fetchall()[0][0]
        specs = cls.model_specs(con)
        return {
            "posters": one("SELECT count(*) FROM posters"),
            "labelled": one(f"SELECT count(DISTINCT poster_id) FROM ({LABELS_SQL})"),
            "reviewed": one("SELECT count(DISTINCT poster_id) FROM genre_labels "
                            "WHERE origin = 'review'"),
            "by_decade": dict(con.execute(
                "SELECT coalesce(CAST(decade AS VARCHAR), 'unknown'), count(*) FROM posters "
                "GROUP BY 1 ORDER BY 1").fetchall()),
            "by_genre": dict(con.execute(f"SELECT genre, count(*) FROM ({LABELS_SQL}) "
                                         "GROUP BY 1 ORDER BY 2 DESC").fetchall()),
            "predicted_by_genre": dict(con.execute(
                "SELECT genre, count(*) FROM genre_labels WHERE origin = 'prediction' "
                "GROUP BY 1 ORDER BY 2 DESC").fetchall()),
            "ingest_errors": one("SELECT count(*) FROM ingest_errors"),
            "specs": specs,
            "vectors": {s.name: cls.vector_count(con, embedding_table(s.name)) for s in specs},
            "classifiers": cls.classifier_rows(con),
        }

    @classmethod
    def check_facts(cls, con) -> dict:
        """What `posterdb check` compares: ids, images, duplicates, stray labels, decades, vectors."""
        one = lambda sql, p=(): con.execute(sql, list(p)).fetchall()[0][0]
        specs = cls.model_specs(con)
        return {
            "poster_ids": np.asarray([r[0] for r in con.execute(
                "SELECT id FROM posters ORDER BY id").fetchall()], dtype=np.int64),
            "images": con.execute("SELECT id, sha256, image_path FROM posters").fetchall(),
            "dup_sha": one("SELECT count(*) - count(DISTINCT sha256) FROM posters"),
            "bad_genres": [g for (g,) in con.execute(
                f"SELECT DISTINCT genre FROM genre_labels WHERE genre NOT IN "
                f"({','.join('?' * len(GENRES))})", list(GENRES)).fetchall()],
            "orphan_labels": one("SELECT count(*) FROM genre_labels WHERE poster_id NOT IN "
                                 "(SELECT id FROM posters)"),
            "bad_decades": one("SELECT count(*) FROM posters WHERE year IS NOT NULL AND "
                               "decade <> year // 10 * 10"),
            "orphan_paths": one("SELECT count(*) FROM poster_paths WHERE poster_id NOT IN "
                                "(SELECT id FROM posters)"),
            "next_id": int(one("SELECT value FROM meta WHERE key = 'next_poster_id'")),
            "specs": specs,
            "vector_ids": {s.name: cls.vector_ids(con, embedding_table(s.name)) for s in specs},
        }

    @staticmethod
    def file_layout(con) -> tuple[int, int, int]:
        """(block size, total blocks, free blocks) of the open catalogue (the block check)."""
        cols = "block_size, total_blocks, free_blocks"
        row = con.execute(f"SELECT {cols} FROM pragma_database_size() "
                          "WHERE database_name = current_database()").fetchall()
        if not row:
            row = con.execute(f"SELECT {cols} FROM pragma_database_size()").fetchall()
        return int(row[0][0]), int(row[0][1]), int(row[0][2])
