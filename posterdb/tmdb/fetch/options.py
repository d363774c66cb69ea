"""What a TMDb fetch is asked for (FetchOptions, checked before anything is written) and what it
did (DecadeReport, FetchReport: the ``--json`` summary and the exit code)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from posterdb.core.errors import RefusedError
from posterdb.core.rules import check_decades
from posterdb.tmdb.client import MAX_PAGE, TMDbUsageError

SORTS = ("vote_count.desc", "popularity.desc", "revenue.desc", "vote_average.desc",
         "primary_release_date.asc", "primary_release_date.desc", "original_title.asc")


class FetchError(RefusedError):
    """The output folder cannot be used (locked by another fetch, not writable, ...): exit 3."""


@dataclass(frozen=True)
class FetchOptions:
    """What to fetch; :meth:`check` raises TMDbUsageError (exit 2) for impossible values."""

    decades: tuple[int, ...]
    per_decade: int
    max_genres: int = 5
    size: str = "w342"
    min_votes: int | None = None
    language: str | None = None
    sort_by: str = "vote_count.desc"
    concurrency: int = 8

    def check(self) -> FetchOptions:
        if not self.decades:
            raise TMDbUsageError("no decades given (e.g. --decades 1970,2010)")
        if check_decades(self.decades) != list(self.decades):
            raise TMDbUsageError(f"decades {list(self.decades)}: give first years, e.g. 1970,2010")
        if self.per_decade < 1:
            raise TMDbUsageError(f"--per-decade must be at least 1 (got {self.per_decade})")
        if self.per_decade > MAX_PAGE * 20:
            raise TMDbUsageError(f"--per-decade {self.per_decade}: TMDb lists at most "
                                 f"{MAX_PAGE * 20:,} films per query")
        if self.max_genres < 1:
            raise TMDbUsageError(f"--max-genres must be at least 1 (got {self.max_genres})")
        if not 1 <= self.concurrency <= 64:
            raise TMDbUsageError(f"--concurrency must be 1..64 (got {self.concurrency})")
        if self.min_votes is not None and self.min_votes < 0:
            raise TMDbUsageError(f"--min-votes must be >= 0 (got {self.min_votes})")
        if self.sort_by not in SORTS:
            raise TMDbUsageError(f"--sort {self.sort_by!r}: one of {', '.join(SORTS)}")
        return self


@dataclass
class DecadeReport:
    """One decade's counts: `had` rows before this run, `have` now (had + downloaded + adopted)."""

    decade: int
    wanted: int
    had: int = 0
    downloaded: int = 0
    adopted: int = 0
    failed: int = 0
    pages: int = 0
    available: int | None = None  # TMDb's total_results for the decade's query

    @property
    def have(self) -> int:
        return self.had + self.downloaded + self.adopted


@dataclass
class FetchReport:
    out_dir: str
    labels: str
    decades: list[DecadeReport]
    failed: list[dict] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=lambda: {
        "no_poster": 0, "no_genres": 0, "no_year": 0, "repeated": 0})
    dropped_rows: int = 0      # rows of labels.csv whose image had gone (fetched again)
    removed_orphans: int = 0   # images with no row that the run did not reach (deleted)
    seconds: float = 0.0
    requests: int = 0

    @property
    def downloaded(self) -> int:
        return sum(d.downloaded for d in self.decades)

    @property
    def adopted(self) -> int:
        return sum(d.adopted for d in self.decades)

    @property
    def posters_per_s(self) -> float:
        return self.downloaded / self.seconds if self.seconds > 0 else 0.0

    @property
    def short(self) -> dict[int, int]:
        """Decades that ran out of films: decade → posters missing."""
        return {d.decade: d.wanted - d.have for d in self.decades if d.have < d.wanted}

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def to_dict(self) -> dict:
        return {"out_dir": self.out_dir, "labels": self.labels,
                "decades": [asdict(d) | {"have": d.have} for d in self.decades],
                "downloaded": self.downloaded, "adopted": self.adopted,
                "posters": sum(d.have for d in self.decades), "failed": self.failed,
                "skipped": self.skipped, "dropped_rows": self.dropped_rows,
                "removed_orphans": self.removed_orphans, "short": self.short,
                "seconds": round(self.seconds, 3), "posters_per_s": round(self.posters_per_s, 2),
                "requests": self.requests}
