"""Ingest's stages one at a time (plan, engine, commit + post-commit steps), and another engine
plugged in: the shape a Ray pipeline that decodes and embeds elsewhere will use."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from synthetic import (
    make_posters,  # tests/ is on sys.path (rootdir conftest, no __init__.py)
)

from posterdb.embedders import get_embedder
from posterdb.ingest import Embedded, Failed, Item, Known, LocalEngine, plan, run_ingest
from posterdb.media.images import open_poster
from posterdb.store import PosterDB

FAKE = "fake-pixels"


def test_plan_then_local_engine(tmp_path):
    src = make_posters(tmp_path / "src", 12, seed=5)
    (src / "images" / "broken.png").write_bytes(b"not a png")
    db = PosterDB.open(tmp_path / "s")
    emb = get_embedder(FAKE)
    p = plan(db.catalog, emb.spec, src, src / "labels.csv", run_id="t1")
    assert len(p.sources) == 13 and p.done_shas == frozenset() and p.table == "embeddings_fake_pixels"
    assert sum(r is not None for _, r in p.sources) == 12
    out = list(LocalEngine(emb, batch_size=5).run(p))
    batches = [o for o in out if isinstance(o, Embedded)]
    assert [len(b.items) for b in batches] == [5, 5, 2]
    assert all(b.vectors.shape == (len(b.items), emb.dim) for b in batches)
    assert [o.path.name for o in out if isinstance(o, Failed)] == ["broken.png"]


class RemoteEngine:
    """Stands in for an engine that embeds elsewhere and streams batches back: it hands over
    precomputed (item, vector) pairs, in batches of 4, without the local decode threads."""

    def __init__(self, embedder):
        self.embedder = embedder

    def run(self, the_plan, progress=None):
        items = [Item(path, row, open_poster(path)) for path, row in the_plan.sources]
        for i in range(0, len(items), 4):
            chunk = items[i:i + 4]
            fresh = [it for it in chunk if it.poster.sha256 not in the_plan.done_shas]
            for it in chunk:
                if it not in fresh:
                    yield Known(it.path, it.row, it.poster.sha256)
            if fresh:
                yield Embedded(fresh, self.embedder.embed_images([it.poster.image for it in fresh]))


def test_another_engine_reuses_plan_commit_and_post_commit(tmp_path):
    src = make_posters(tmp_path / "src", 10, seed=6)
    db = PosterDB.open(tmp_path / "s")
    emb = db.models.embedder(FAKE)
    report = run_ingest(db.catalog, db.images, db.indexes, emb, src, src / "labels.csv",
                        engine=RemoteEngine(emb))
    assert report.added == 10 and not report.failed
    fresh = PosterDB.open(tmp_path / "s", create=False)
    assert fresh.check()["ok"] and len(fresh.indexes.index()) == 10
    assert all(p.genres for p in fresh.posters.get())
    again = run_ingest(db.catalog, db.images, db.indexes, emb, src, src / "labels.csv",
                       engine=RemoteEngine(emb))
    assert again.added == 0 and again.skipped == 10
    # the same vectors the local engine would have stored
    local = PosterDB.open(tmp_path / "t")
    local.ingest(src, src / "labels.csv", model=FAKE)
    assert np.allclose(local.search.vectors(list(range(1, 11))), fresh.search.vectors(list(range(1, 11))))


def test_similar_does_not_hold_a_session_while_embedding(tmp_path):
    src = make_posters(tmp_path / "src", 8, seed=7)
    db = PosterDB.open(tmp_path / "s")
    db.ingest(src, src / "labels.csv", model=FAKE)
    emb = db.models.embedder(FAKE)
    sessions = []
    original = emb.embed_images

    def spy(images):
        sessions.append(getattr(db.catalog._local, "session", None))  # noqa: SLF001 - the probe
        return original(images)

    emb.embed_images = spy
    hits = db.similar(Path(next((src / "images").iterdir())), 3)
    assert hits and sessions == [None]
