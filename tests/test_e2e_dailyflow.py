"""The page's Classify section in a real browser with a store that has a film catalogue (issue
21, acceptance 4): an uploaded scan shows its film and the film's genres first; a year typed
and then "Add to catalogue" clicked stores the genres that were selected, with the year and
the film's identification.

`streamlit run app.py` as a subprocess, headless Debian Chromium through playwright (helpers
from test_e2e); a real store (DuckDB, FAISS, image copies) trained with the `fake-pixels`
embedder on synthetic posters; real shared posters uploaded; the real OCR models; a film file
as the configured catalogue."""
from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import pytest
from synthetic import make_posters
from test_e2e import (  # noqa: F401
    CHROMIUM,
    PAGE_PASSWORD,
    TIMEOUT_MS,
    assert_page_clean,
    browser,
    screenshot,
    serve,
    sign_in,
)

from posterdb.store import PosterDB
from posterdb.ui import auth

pytest.importorskip("rapidocr_onnxruntime")
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                                  reason=f"{CHROMIUM} is missing")]

WAY_DOWN_EAST, THE_KID, SATANS_BOOK = "tt0011841", "tt0012349", "tt0011000"
FILMS = [("tt0011841", "Way Down East", 1920, "Drama|Romance"),
         ("tt0011000", "Leaves From Satan's Book", 1920, "Drama|Horror"),
         ("tt0012349", "The Kid", 1921, "Comedy|Drama|Family"),
         ("near-1", "The Kid", 1950, "Western"), ("near-2", "Way Down East", 1935, "Drama"),
         ("near-3", "The Kid Brother", 1927, "Comedy")]


@pytest.fixture(scope="module")
def film_store(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("e2e-film")
    src = make_posters(base / "src", 60, seed=1)
    db = PosterDB.open(base / "store")
    db.ingest(src, src / "labels.csv", model="fake-pixels")
    db.train()
    films = base / "films.csv"
    with open(films, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "title", "year", "genres"])
        w.writerows(FILMS)
    db.daily.configure("catalogue", str(films))
    auth.set_page_password(db, PAGE_PASSWORD)
    return db.root


def _upload(page, path: Path) -> str:
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _chips(page, key: str) -> list[str]:
    """The genres selected in the upload's form (after the form is drawn)."""
    tags = page.locator(f".st-key-genres-pick-{key} span[data-tag]")
    tags.first.wait_for()
    return sorted(tags.nth(i).get_attribute("aria-label") for i in range(tags.count()))


def test_upload_shows_the_film_first_and_a_typed_year_then_add_stores_the_selection(
        browser, film_store, posters_dir, tmp_path):  # noqa: F811
    named = tmp_path / "Way Down East (1920).jpg"
    shutil.copyfile(posters_dir / "images" / f"{WAY_DOWN_EAST}.jpg", named)
    bare = tmp_path / "scan-0001.jpg"
    shutil.copyfile(posters_dir / "images" / f"{THE_KID}.jpg", bare)
    with serve(film_store, tmp_path, tmp_path / "server.log") as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        page.get_by_role("heading", name="Classify a poster").wait_for()

        # 1. a scan whose name gives its year: its film and genres come first
        key = _upload(page, named)
        film = page.locator(f".st-key-film-{key}")
        film.get_by_text("Way Down East", exact=False).first.wait_for()
        text = film.inner_text()
        assert "identified" in text and "(1920)" in text and "tt0011841" in text
        assert "Drama" in text and "Romance" in text
        page.locator(f".st-key-genres-{key} [data-testid='stProgress']").first.wait_for()
        guess = page.locator(f".st-key-genres-{key}").inner_text()
        assert "threshold" in guess                             # each genre's threshold shown
        assert _chips(page, key) == ["Drama", "Romance"]        # the form takes the film's
        assert_page_clean(page)
        screenshot(page, "e2e-classify-film.png")

        # 2. a bare scan: not identified without its year; type it, press Enter: the film
        other = tmp_path / "scan-0002.jpg"
        shutil.copyfile(posters_dir / "images" / f"{SATANS_BOOK}.jpg", other)
        page.goto(url)
        page.get_by_role("heading", name="Classify a poster").wait_for()
        key = _upload(page, other)
        film = page.locator(f".st-key-film-{key}")
        film.get_by_text("not identified", exact=False).first.wait_for()
        assert _chips(page, key)                        # the form is drawn (the prediction)
        page.locator(f".st-key-year-{key} input").fill("1920")
        page.locator(f".st-key-year-{key} input").press("Enter")
        film.get_by_text("Leaves From Satan's Book", exact=False).first.wait_for()
        page.wait_for_function(
            """(k) => [...document.querySelectorAll(`.st-key-genres-pick-${k} span[data-tag]`)]
                 .map(t => t.getAttribute('aria-label')).sort().join('|') === 'Drama|Horror'""",
            arg=key, timeout=TIMEOUT_MS)
        assert PosterDB.open(film_store, create=False).posters.count() == 60     # looked up, not added

        # 3. another bare scan: type its year and press Add at once (signed in to write)
        page.goto(url)
        page.get_by_role("heading", name="Classify a poster").wait_for()
        sign_in(page)
        page.get_by_text("Signed in: changes are allowed.").wait_for()
        key = _upload(page, bare)
        film = page.locator(f".st-key-film-{key}")
        film.get_by_text("not identified", exact=False).first.wait_for()
        page.locator(f".st-key-genres-{key} [data-testid='stProgress']").first.wait_for()
        selected = _chips(page, key)
        assert selected                                           # the prediction's genres
        page.locator(f".st-key-year-{key} input").fill("1921")
        page.locator(f".st-key-add-btn-{key} button").click()
        flash = page.locator('[data-testid="stAlertContentSuccess"]')
        flash.get_by_text("as poster #", exact=False).wait_for()
        assert "and its film" in flash.inner_text()          # read and identified, stored
        assert "Pick at least one genre" not in page.locator("body").inner_text()
        assert_page_clean(page)
        screenshot(page, "e2e-classify-year-add.png")

    db = PosterDB.open(film_store, create=False)
    (pid,) = [p.id for p in db.posters.get() if p.sha256.startswith(key)]
    stored = db.posters.one(pid)
    assert stored.reviewed and sorted(stored.genres) == selected and stored.year == 1921
    got = db.reading.of([pid])[pid]
    assert got["lines"] and got["identified"]["status"] == "identified"
    assert (got["identified"]["title"], got["identified"]["year"]) == ("The Kid", 1921)
    assert "Traceback" not in (tmp_path / "server.log").read_text()
