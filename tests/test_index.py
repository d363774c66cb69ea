"""The FAISS index kinds on real poster vectors: the exact one and, with the size threshold lowered,
the approximate re-ranked IVF the store uses at scale (adds, removes, filters, save/load, sync)."""
from __future__ import annotations

import numpy as np
import pytest

from posterdb.embedders.base import ModelSpec
from posterdb.store import PosterDB
from posterdb.vectors import index as index_mod
from posterdb.vectors.index import REFINE, VectorIndex, choose_factory

SPEC = ModelSpec("mobilenet-v2", "test", "0" * 64, 1280)


@pytest.fixture(scope="module")
def real(label_rows, posters_dir, model_dir) -> np.ndarray:
    """MobileNet vectors of 400 real posters (every 12th row)."""
    from posterdb.embedders import get_embedder
    from posterdb.media.images import decode, read_bytes

    emb = get_embedder("mobilenet-v2", model_dir=model_dir, allow_download=False)
    files = [posters_dir / r["file"] for r in label_rows[::12][:400]]
    batch = np.stack([emb.preprocess(decode(read_bytes(f), str(f)).image) for f in files])
    return emb.embed_batch(batch)


def exact_top(vectors, ids, queries, k, allowed=None):
    keep = np.ones(len(ids), bool) if allowed is None else np.isin(ids, allowed)
    s = queries @ vectors[keep].T
    return ids[keep][np.argsort(-s, axis=1, kind="stable")[:, :k]]


def recall(got, truth):
    return float(np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(got, truth)]))


def test_choose_factory_follows_the_threshold(monkeypatch):
    assert choose_factory(100_000) == "Flat"
    big = choose_factory(1_000_000)
    assert big == "PCA256,HNSW32" + REFINE
    assert choose_factory(300, exact_max=299).endswith(REFINE)
    assert choose_factory(300, exact_max=300) == "Flat"
    monkeypatch.setattr(index_mod, "EXACT_MAX", 10)
    assert choose_factory(11) != "Flat"


def test_approximate_index_finds_what_exact_finds(real, tmp_path):
    ids = np.arange(len(real), dtype=np.int64) * 3 + 7      # poster ids are not positions
    vi = VectorIndex.build(SPEC, [(ids[:200], real[:200]), (ids[200:], real[200:])], len(real),
                           real, factory=choose_factory(len(real), exact_max=100))
    assert vi.factory.endswith(REFINE) and vi.refine is not None
    assert len(vi) == len(real) and np.array_equal(vi.ids(), ids)
    res = vi.search(real, 10)
    # every poster's top hit is itself, scored exactly (float16 copies: cosine error ~1e-4)
    assert np.array_equal(res.ids[:, 0], ids) and np.all(res.similarities[:, 0] > 0.999)
    assert recall(res.ids, exact_top(real, ids, real, 10)) >= 0.97
    exact_sims = np.sort(real[:5] @ real.T, axis=1)[:, ::-1][:, :10]
    assert np.allclose(res.similarities[:5], exact_sims, atol=2e-3)

    # a filter (what decade/genre become): only allowed ids, the exact filtered neighbours
    allowed = ids[::9]
    got = vi.search(real[:50], 5, allowed).ids
    assert np.isin(got[got >= 0], allowed).all()
    assert recall(got, exact_top(real, ids, real[:50], 5, allowed)) >= 0.95
    tiny = vi.search(real[:3], 10, ids[:2]).ids
    assert [set(row[row >= 0]) for row in tiny] == [set(ids[:2])] * 3   # -1 padded, never others

    # removes and adds keep the ids equal to the caller's (DuckDB's) set
    assert vi.remove(ids[:40]) == 40
    assert np.array_equal(vi.ids(), ids[40:])
    assert not np.isin(vi.search(real[:40], 10).ids, ids[:40]).any()
    vi.add(ids[:40], real[:40])
    assert np.array_equal(vi.ids(), ids)
    assert np.array_equal(vi.search(real[:40], 1).ids[:, 0], ids[:40])

    # save/load round trip: same kind, nprobe, answers
    vi.nprobe = 5
    path = tmp_path / "index" / "m.faiss"
    vi.save(path)
    back = VectorIndex.load(path)
    assert (back.factory, back.nprobe, len(back)) == (vi.factory, 5, len(vi))
    assert np.array_equal(back.search(real[:20], 10).ids, vi.search(real[:20], 10).ids)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(Exception):
        VectorIndex.load(path)


def test_removed_posters_leave_the_graph_when_tombstones_pile_up(real, monkeypatch):
    monkeypatch.setattr(index_mod, "TOMBSTONES_MIN", 0)
    ids = np.arange(len(real), dtype=np.int64) + 1
    vi = VectorIndex.build(SPEC, [(ids, real)], len(real), real,
                           factory=choose_factory(len(real), exact_max=100))
    vi.remove(ids[:30])                       # 30 < 20 % of 370: tombstones, graph untouched
    assert len(vi) == len(real) - 30 and vi.index.ntotal == len(real)
    assert not np.isin(vi.search(real[:30], 10).ids, ids[:30]).any()
    assert np.array_equal(vi.search(real[30:60], 1).ids[:, 0], ids[30:60])
    vi.remove(ids[30:100])                    # 100 > 20 % of 300: the graph is rebuilt
    assert vi.index.ntotal == len(vi) == len(real) - 100 and not len(vi._dead)
    assert np.array_equal(vi.ids(), ids[100:])
    assert np.array_equal(vi.search(real[100:], 1).ids[:, 0], ids[100:])
    assert not np.isin(vi.search(real[:100], 10).ids, ids[:100]).any()


def test_store_above_threshold_uses_the_approximate_index(tmp_path, poster_slice, model_dir):
    """The store's add / remove / sync / filter path with the threshold lowered to 50 posters."""
    first = poster_slice(90, every=29, name="a")
    db = PosterDB.open(tmp_path / "store", model_dir=model_dir, exact_max=50)
    assert db.ingest(first, first / "labels.csv").added == 90
    state = db.indexes.state()          # the ingest's Flat grew past 50: rebuilt as the graph
    assert state.factory == choose_factory(90, exact_max=50) and state.factory.endswith(REFINE)
    with db.catalog.read() as con:
        duck = lambda: db.catalog.vector_ids(con, "embeddings_mobilenet_v2")  # noqa: E731
        assert np.array_equal(db.indexes.index().ids(), duck())
    assert db.check()["ok"]

    # filters: every hit is in the decade / genre, and the hits are the exact filtered top-5
    pid = int(db.indexes.index().ids()[3])
    decade = db.posters.one(pid).decade
    hits = db.similar(pid, k=5, decades=[decade])
    assert hits and all(h.decade == decade for h in hits) and pid not in [h.id for h in hits]
    ids = db.indexes.index().ids()
    vecs = db.search.vectors(ids)
    same = np.array([db.posters.one(int(i)).decade == decade for i in ids])
    want = exact_top(vecs, ids, vecs[ids == pid], 6, ids[same])[0]
    assert [h.id for h in hits] == [int(i) for i in want if i != pid][:len(hits)]
    for h in db.similar(pid, k=5, genres=["Drama"]):
        assert "Drama" in h.genres

    # remove: gone from DuckDB and FAISS together
    gone = [int(i) for i in ids[:7]]
    db.remove(gone)
    assert np.array_equal(db.indexes.index().ids(), np.setdiff1d(ids, gone))
    assert not set(gone) & {h.id for h in db.similar(int(ids[10]), k=20)}

    # a later ingest adds through the same index; a fresh process syncs from the saved file
    more = poster_slice(30, start=3, every=29, name="b")   # rows not in "a"
    assert db.ingest(more, more / "labels.csv").added == 30
    fresh = PosterDB.open(db.root, model_dir=model_dir, exact_max=50)
    assert fresh.indexes.state().status in ("loaded", "synced")
    with fresh.catalog.read() as con:
        assert np.array_equal(fresh.indexes.index().ids(),
                              fresh.catalog.vector_ids(con, "embeddings_mobilenet_v2"))
    assert fresh.check()["ok"]
    # the file deleted: rebuilt from DuckDB as the same kind
    fresh.indexes.path("mobilenet-v2").unlink()
    again = PosterDB.open(db.root, model_dir=model_dir, exact_max=50)
    st = again.indexes.state()
    assert st.status == "rebuilt" and st.factory == choose_factory(113, exact_max=50) and st.ntotal == 113
    assert again.similar(int(ids[10]), k=1)[0].similarity > 0.5
