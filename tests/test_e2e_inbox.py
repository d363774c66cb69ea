"""The page's Inbox section in a real browser (issue 11, acceptance 4): bulk accept of a page of
20 suggestions, and a poster's duplicates in tiers (its exact copy and its rescan).

A real store (DuckDB, FAISS, image copies) trained with the deterministic `fake-pixels` embedder
on synthetic posters, filled through the real inbox watcher; `streamlit run app.py` as a
subprocess, headless Debian Chromium through playwright (helpers from test_e2e)."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from PIL import Image
from synthetic import make_posters
from test_e2e import (  # noqa: F401
    CHROMIUM,
    PAGE_PASSWORD,
    assert_page_clean,
    browser,
    screenshot,
    serve,
    sign_in,
    wait_images,
)

from posterdb.curation.inbox import Inbox
from posterdb.curation.watch import Watcher
from posterdb.store import PosterDB
from posterdb.ui import auth

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                                  reason=f"{CHROMIUM} is missing")]


@pytest.fixture(scope="module")
def inbox_store(tmp_path_factory) -> tuple[Path, int, int]:
    """(store, id of a poster with an exact copy and a rescan, id of the rescan)."""
    base = tmp_path_factory.mktemp("e2e-inbox")
    src = make_posters(base / "src", 60, seed=1)
    db = PosterDB.open(base / "store")
    db.ingest(src, src / "labels.csv", model="fake-pixels")
    db.train()
    new = sorted((make_posters(base / "new", 24, seed=3, labelled=0) / "images").iterdir())
    inbox = base / "INBOX"
    inbox.mkdir()
    for i, f in enumerate(new):
        shutil.copy(f, inbox / f"Arrival {i} ({1950 + i}).png")
    Watcher(Inbox(inbox, settle=0), lambda b: db.curation.process(b, root=inbox)).run_once()
    original = new[0]
    shutil.copy(original, inbox / "same bytes, other name.png")           # exact copy
    buf = io.BytesIO()                                                     # a rescan
    Image.open(original).convert("RGB").resize((46, 69)).save(buf, "JPEG", quality=85)
    (inbox / "Arrival 0 rescan.jpg").write_bytes(buf.getvalue())
    Watcher(Inbox(inbox, settle=0), lambda b: db.curation.process(b, root=inbox)).run_once()
    auth.set_page_password(db, PAGE_PASSWORD)      # writes on the page need a signed-in user
    by_title = {p.title: p.id for p in db.posters.export()}
    rescan = next(p.id for p in db.posters.export() if p.path.endswith("rescan.jpg"))
    return db.root, by_title["Arrival 0"], rescan


def test_inbox_bulk_accept_and_duplicate_tiers(browser, inbox_store, tmp_path):  # noqa: F811
    store, poster, rescan = inbox_store
    db = PosterDB.open(store, create=False)
    waiting = db.curation.queue("new", limit=100)
    assert len(waiting) == 25 and not any(p.reviewed for p in db.posters.get(
        [w["id"] for w in waiting]))
    tiers = {d["tier"]: d for d in db.curation.duplicates(poster)}
    assert tiers["exact copy"]["path"].endswith("same bytes, other name.png")
    assert tiers["near-duplicate"]["id"] == rescan

    auth.set_page_password(db, PAGE_PASSWORD)
    with serve(store, tmp_path, tmp_path / "server.log") as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(90_000)
        page.goto(url)
        sign_in(page)
        page.get_by_text("Signed in: changes are allowed.").wait_for()
        page.locator('[data-testid="stSidebar"]').get_by_text("Inbox", exact=True).click()
        page.get_by_text("25 posters waiting", exact=False).first.wait_for()

        # all 25 on one page: the poster with a copy and a rescan shows both tiers
        page.locator(".st-key-inbox-per-page").click()
        page.get_by_role("option", name="40").click()
        dups = page.locator(f".st-key-inbox-dups-{poster}")
        dups.wait_for()
        text = dups.inner_text()
        assert "exact copy" in text and "same bytes, other name.png" in text
        assert "near-duplicate" in text and f"#{rescan}" in text
        screenshot(page, "e2e-inbox-tiers.png")

        # 20 per page: nothing uncertain is pre-ticked; tick the page, accept it in one click
        page.locator(".st-key-inbox-per-page").click()
        page.get_by_role("option", name="20").click()
        first_page = [w["id"] for w in waiting[:20]]
        page.get_by_role("button", name="Tick all 20").wait_for()
        page.wait_for_function("""() => document.querySelectorAll(
            '.st-key-inbox-queue input[type=checkbox]').length === 20""")
        boxes = page.locator(".st-key-inbox-queue input[type=checkbox]")
        assert not any(boxes.nth(i).is_checked() for i in range(20))
        page.get_by_role("button", name="Tick all 20").click()
        page.wait_for_function("""() => [...document.querySelectorAll(
            '.st-key-inbox-queue input[type=checkbox]')].filter(b => b.checked).length === 20""")
        button = page.get_by_role("button", name="Accept the ticked posters of this page")
        button.click()
        page.get_by_text("Accepted the genres of 20 posters").wait_for()
        page.get_by_text("5 posters waiting", exact=False).first.wait_for()
        assert_page_clean(page)
        screenshot(page, "e2e-inbox-accepted.png")

        page.get_by_text("Today's arrivals", exact=True).click()
        page.get_by_text("85 posters arrived today", exact=False).wait_for()   # 60 + 25 new
        wait_images(page, ".st-key-inbox-arrivals img", 20)
        card = page.locator(f".st-key-inbox-arrival-{first_page[0]}")
        assert "labels" in card.inner_text()           # its genres, now a person's labels
        assert_page_clean(page)

    after = PosterDB.open(store, create=False)
    reviewed = [p for p in after.posters.get(first_page) if p.reviewed]
    assert len(reviewed) == 20
    assert all(p.genres == p.predicted for p in reviewed)   # the suggestions, as shown
    assert len(after.curation.queue("new", limit=100)) == 5
    assert "Traceback" not in (tmp_path / "server.log").read_text()
