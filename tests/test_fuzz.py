"""Property tests: decode and read_labels never raise anything but their own errors on any input."""
from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from posterdb.core.errors import ImageError, LabelsError
from posterdb.core.genres import GENRES
from posterdb.media.images import PosterImage, decode
from posterdb.media.labels import YEAR_MAX, YEAR_MIN, read_labels

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")   # PIL warns about corrupt TIFF tags
FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _small(posters_dir: Path, fmt: str, **kw) -> bytes:
    im = Image.open(posters_dir / "images/tt0015648.jpg").convert("RGB").resize((48, 72))
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def seeds(posters_dir) -> dict[str, bytes]:
    """Small real-poster encodings to mutate (small, so a mutated header cannot claim much)."""
    return {"jpeg": _small(posters_dir, "JPEG"), "progressive": _small(posters_dir, "JPEG", progressive=True),
            "png": _small(posters_dir, "PNG"), "gif": _small(posters_dir, "GIF"),
            "webp": _small(posters_dir, "WEBP"), "tiff": _small(posters_dir, "TIFF"),
            "bmp": _small(posters_dir, "BMP")}


def _check_decode(data: bytes) -> None:
    try:
        p = decode(data, "fuzz", max_pixels=4_000_000)
    except ImageError as e:
        assert e.path == "fuzz" and e.reason
        event(f"error: {e.reason.split(':')[0]}")
        return
    event("decoded")
    assert isinstance(p, PosterImage) and p.image.mode == "RGB"
    assert p.image.size == (p.width, p.height) and p.width * p.height <= 4_000_000


@FUZZ
@given(st.binary(max_size=4096))
def test_decode_arbitrary_bytes(data):
    _check_decode(data)


@st.composite
def mutations(draw, seeds: dict[str, bytes]) -> bytes:
    data = bytearray(seeds[draw(st.sampled_from(sorted(seeds)))])
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "byte", "cut", "insert", "delete"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte" and data:
            data[at] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0xD9, 0xD8, 0xC0, 0x01]))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 64))]
    return bytes(data)


@FUZZ
@given(data=st.data())
def test_decode_mutated_real_images(seeds, data):
    _check_decode(data.draw(mutations(seeds)))


# ------------------------------------------------------------------ labels

@pytest.fixture(scope="module")
def labels_dir(posters_dir):
    """A folder holding two real posters; the labels file is rewritten for every example."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "set"
        (root / "images").mkdir(parents=True)
        for name in ("a.jpg", "images/b.jpg"):
            shutil.copyfile(posters_dir / "images/tt0015648.jpg", root / name)
        (Path(tmp) / "secret.jpg").write_bytes(b"outside")
        yield root


PATHS = ["a.jpg", "images/b.jpg", "./a.jpg", " a.jpg ", "images\\b.jpg", "../secret.jpg",
         "../set/a.jpg", "/etc/passwd", "images", "missing.jpg", "a.jpg\x00", "", "../" * 30 + "x"]
VALUES = ["Drama", "sci-fi|Film-Noir", "Biography", "Comedy, Romance", "1999", "1850", "abc", "1e9",
          "1999.0", "Title (1999)", "null", "\ufeff", "é", "☃", '"', '"q,"', "{", "[", "\r"]
TOKENS = PATHS + VALUES + ["file", "title", "year", "genres", ",", ";", "\t", "|", "\n", "\r\n", " "]
field = st.sampled_from(PATHS + VALUES) | st.text(max_size=6)


@st.composite
def csv_docs(draw) -> str:
    """Mostly well-formed CSV (real header, rows of plausible fields) with some noise."""
    delim = draw(st.sampled_from([",", ";", "\t"]))
    header = draw(st.permutations(["file", "title", "year", "genres", "other"]))
    header = header[:draw(st.integers(1, 5))] if draw(st.integers(0, 9)) == 0 else header
    cell = {c: st.sampled_from(PATHS) if c == "file" else field for c in header}
    rows = draw(st.lists(st.tuples(*(cell[c] for c in header)).map(list)
                         | st.lists(field, min_size=1, max_size=6), max_size=10))
    text = "\n".join(delim.join(r) for r in [header, *rows])
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(TOKENS)) + text[at:]
    return text


raw_text = st.lists(st.sampled_from(TOKENS) | st.text(max_size=4), max_size=60).map("".join)
json_scalar = (st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats()
               | st.sampled_from(TOKENS) | st.text(max_size=8))
json_value = st.recursive(json_scalar, lambda c: st.lists(c, max_size=3)
                          | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=8)
json_object = st.fixed_dictionaries(
    {"file": st.sampled_from(PATHS) | json_value},
    optional={"title": json_value, "year": json_value | st.integers(1800, 2200),
              "genres": json_value | st.lists(st.sampled_from(VALUES), max_size=3),
              "FILE": json_value}).map(json.dumps)
jsonl_text = st.lists(json_object | st.sampled_from(TOKENS) | st.text(max_size=10), max_size=8
                      ).map("\n".join)


def _check_labels(folder: Path, name: str, content: str | bytes) -> None:
    path = folder / name
    path.write_bytes(content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content)
    try:
        rows, problems = read_labels(path)
    except LabelsError as e:
        assert str(path) in str(e)
        event("LabelsError")
        return
    event("rows" if rows else "no rows")
    real = Path(os.path.realpath(folder))
    assert len({r.row for r in rows}) == len(rows) and len({r.path for r in rows}) == len(rows)
    for r in rows:
        assert r.path.is_absolute() and r.path.is_relative_to(real) and r.path.is_file()
        assert r.year is None or YEAR_MIN <= r.year <= YEAR_MAX
        assert set(r.genres) <= set(GENRES)
        assert r.title is None or isinstance(r.title, str)
    assert all(isinstance(p.row, int) and p.row >= 0 and p.reason for p in problems)


@FUZZ
@given(st.sampled_from(["l.csv", "l.tsv", "labels"]), csv_docs() | raw_text)
def test_read_labels_arbitrary_csv(labels_dir, name, text):
    _check_labels(labels_dir, name, text)


@FUZZ
@given(st.sampled_from(["l.jsonl", "l.ndjson", "l.json", "labels"]), jsonl_text)
def test_read_labels_arbitrary_jsonl(labels_dir, name, text):
    _check_labels(labels_dir, name, text)


@FUZZ
@given(st.binary(max_size=512), st.sampled_from(["l.csv", "l.jsonl"]))
def test_read_labels_arbitrary_bytes(labels_dir, data, name):
    _check_labels(labels_dir, name, b"file,title\n" + data)
