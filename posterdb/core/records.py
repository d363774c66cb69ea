"""The records posterdb hands around: plain dataclasses, no behaviour beyond `to_dict`.

Every layer speaks these: the catalogue and its components return them, the services fill them,
the CLI prints their `to_dict()` as JSON and the page renders them. A stored poster is a frozen
`StoredPoster` (its genre lists are tuples), so a record handed out from a cache cannot be
changed by whoever holds it; `ExportedPoster` adds the film it was identified as.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from posterdb.core.rules import shown_genres

POSTER_COLUMNS = ("id", "sha256", "path", "image_path", "title", "year", "decade", "width",
                  "height", "format", "source", "added_at")


@dataclass(frozen=True)
class PosterRecord:
    """One new poster row, as ingest (or the page) hands it to the catalogue."""

    sha256: str
    path: str
    image_path: str
    title: str | None
    year: int | None
    width: int
    height: int
    format: str | None
    source: str | None


@dataclass(frozen=True)
class StoredPoster:
    """One stored poster: its row (the `POSTER_COLUMNS`), its genres by kind, its image copy."""

    id: int
    sha256: str
    path: str             # original path at ingest
    image_path: str       # the copy's path inside the store
    title: str | None
    year: int | None
    decade: int | None
    width: int
    height: int
    format: str | None
    source: str | None
    added_at: str
    genres: tuple[str, ...]      # its labels (the strongest labelling origin; see rules)
    predicted: tuple[str, ...]   # the classifier's predictions
    published: tuple[str, ...]   # the predictions confident enough for the shop feed
    reviewed: bool               # a person reviewed its genres
    image: str                   # absolute path of the stored copy

    @property
    def shown(self) -> list[str]:
        """The genres it is shown with: its labels, else its predictions."""
        return shown_genres(self.genres, self.predicted)[0]

    def to_dict(self) -> dict:
        """JSON-friendly: the POSTER_COLUMNS, then genres / predicted / published (lists),
        reviewed and image."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("genres", "predicted", "published"):
            d[key] = list(d[key])
        return d

    def identified_as(self, film: dict | None) -> ExportedPoster:
        """This poster with the film it was identified as (None: not identified)."""
        return ExportedPoster(**{f.name: getattr(self, f.name) for f in fields(StoredPoster)},
                              identified=film)


@dataclass(frozen=True)
class ExportedPoster(StoredPoster):
    """A stored poster as `PosterDB.export()` gives it: with `identified` (source, film id,
    title, year, score of the film it was identified as; None when not identified)."""

    identified: dict | None = None

    def to_dict(self) -> dict:
        return super().to_dict() | {"identified": self.identified}


SIMILARITY = "cosine"                # between two posters' stored vectors (`similar`)
VOTE_SIMILARITY = "centred cosine"   # the vote's: vectors centred on their decade's mean


@dataclass
class Hit:
    """One neighbour with the metadata a person needs to judge it. `measure` names what
    `similarity` is: the cosine of the stored vectors, or the vote's decade-centred cosine."""

    id: int
    similarity: float
    title: str | None
    year: int | None
    decade: int | None
    genres: list[str]
    image: str            # absolute path of the stored copy
    path: str             # original path at ingest
    labelled: bool = True  # False: `genres` are the classifier's predictions, not labels
    measure: str = SIMILARITY

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_poster(cls, p: StoredPoster, similarity: float) -> Hit:
        """From a stored poster: shown with its labels, else its predictions."""
        genres, labelled = shown_genres(p.genres, p.predicted)
        return cls(p.id, float(similarity), p.title, p.year, p.decade, genres, p.image, p.path,
                   labelled)

    @classmethod
    def from_voter(cls, p: StoredPoster, voter: Neighbour) -> Hit:
        """A poster that voted in a classification, shown with the genres it voted with (its
        labels when the classifier was trained, whatever they are now)."""
        return cls(p.id, float(voter.similarity), p.title, p.year, p.decade, list(voter.genres),
                   p.image, p.path, True, VOTE_SIMILARITY)


@dataclass
class Neighbour:
    """One labelled poster that voted: its id (as given to fit), similarity in the vote's space,
    the genres it voted with, its decade."""

    id: int
    similarity: float
    genres: list[str]
    decade: int | None


@dataclass
class Prediction:
    """The explanation of one poster's genres (`GenreClassifier.explain`)."""

    genres: list[str]
    probabilities: dict[str, float]
    heads: dict[str, float]
    vote: dict[str, float]
    alpha: float
    decade_head: int | None
    evidence: list = field(default_factory=list)        # Neighbour (classifier) or Hit (store)
    thresholds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["thresholds"] = {g: (None if t is None or t != t or t in (float("inf"), float("-inf"))
                               else t) for g, t in self.thresholds.items()}
        return d


@dataclass(kw_only=True)
class Classification(Prediction):
    """A prediction for one image of the store's caller: its evidence are stored posters (Hit)
    that voted, with the genres they voted with."""

    name: str
    year: int | None
    in_store: int | None = None  # the poster's id when the same bytes are already stored

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["evidence"] = [h.to_dict() | {"shared": sorted(set(h.genres) & set(self.genres))}
                         for h in self.evidence]
        return d


@dataclass
class IndexState:
    """How the in-memory index was brought in line with DuckDB the last time it was opened."""

    model: str
    status: str          # "loaded", "synced", "rebuilt", "empty"
    reason: str = ""
    added: int = 0
    removed: int = 0
    ntotal: int = 0
    factory: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ClassifierRow:
    """A stored classifier as DuckDB records it."""

    id: int
    model: str
    file: str
    sha256: str
    n_train: int = 0
    trained_at: str = ""


@dataclass
class IngestReport:
    """What one ingest run did; `failed` non-empty means exit code 1."""

    run_id: str
    model: str
    scanned: int = 0
    added: int = 0
    embedded_existing: int = 0
    skipped: int = 0
    duplicates: int = 0
    relabelled: int = 0
    predicted: int = 0
    failed: list[dict] = field(default_factory=list)
    label_warnings: list[dict] = field(default_factory=list)
    near_duplicates: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    swept_temp_files: int = 0
    seconds: float = 0.0
    added_ids: list[int] = field(default_factory=list)

    @property
    def posters_per_s(self) -> float:
        return (self.added + self.embedded_existing) / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d.pop("added_ids")
        d["posters_per_s"] = round(self.posters_per_s, 1)
        return d
