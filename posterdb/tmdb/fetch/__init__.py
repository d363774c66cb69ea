"""Build a labelled training set from TMDb, as the study did: N posters per decade plus labels.

``OUT/images/<decade>s/<tmdb_id>.<ext>`` and ``OUT/labels.csv`` (file, tmdb_id, title, year,
genres ``|``-separated in TMDb's order, cut at ``max_genres``), which ``posterdb ingest OUT
--labels OUT/labels.csv`` reads. Films come from ``/discover/movie`` (primary release date within
the decade, a stable sort), page by page until the decade has N posters or the pages run out.

Why it survives a kill at any moment: an image lands by write-temp, fsync, rename; labels.csv is
rewritten whole the same way (about every second, and at the end), so there is never a torn row.
Why a re-run downloads nothing twice: rows already in labels.csv count towards N and are skipped;
an image that a kill left on disk without its row is validated and adopted, not fetched again.
A lock file keeps two fetches from writing the same folder.
"""
from posterdb.tmdb.fetch.fetcher import LOCK_NAME, Fetcher, fetch_tmdb
from posterdb.tmdb.fetch.files import LABEL_COLUMNS, LabelsFile, write_atomic
from posterdb.tmdb.fetch.options import (
    SORTS, DecadeReport, FetchError, FetchOptions, FetchReport)

__all__ = ["LABEL_COLUMNS", "LOCK_NAME", "SORTS", "DecadeReport", "FetchError", "FetchOptions",
           "FetchReport", "Fetcher", "LabelsFile", "fetch_tmdb", "write_atomic"]
