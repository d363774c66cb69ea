"""The page in a real browser: `streamlit run app.py` as a subprocess, headless Debian Chromium
through playwright, a store built from real posters with a trained classifier.

Screenshots land in artifacts/ (gitignored). Skipped only when /usr/bin/chromium is absent
(scripts/setup.sh installs it).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from posterdb.store import PosterDB
from posterdb.testing.slices import posterdb_cmd, subprocess_env
from posterdb.ui import auth
from tests.conftest import copy_slice

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
TIMEOUT_MS = 90_000

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} is missing (apt-get install chromium; "
                              f"scripts/setup.sh does it)"),
]

# what must never be on the page
BAD_SELECTORS = ('[data-testid="stException"]', '[data-testid="stAlertContentError"]')
BAD_TEXT = ("Traceback", "StoreBusyError", "Could not set lock", "Conflicting lock",
            "The store is busy")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(store: Path, model_dir: Path, log: Path, address: str = "127.0.0.1"):
    """`streamlit run app.py ... -- --store STORE` on a free port of `address` (reached on
    127.0.0.1, which a wildcard address includes); always stopped."""
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
           "--server.port", str(port), "--server.address", address,
           "--server.headless", "true", "--", "--store", str(store),
           "--model-dir", str(model_dir)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTERDB_")}
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not come up:\n{log.read_text()[-3000:]}")
            time.sleep(0.25)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def build_store(root: Path, label_rows, posters_dir, model_dir, n: int, every: int) -> Path:
    src = copy_slice(label_rows, posters_dir, root / "src", n, every=every)
    db = PosterDB.open(root / "store", model_dir=model_dir)
    report = db.ingest(src, src / "labels.csv")
    assert report.added == n and not report.failed
    db.train()
    return db.root


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def new_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.get_by_role("heading", name="Classify a poster").wait_for()
    return page


def assert_page_clean(page) -> None:
    for sel in BAD_SELECTORS:
        assert page.locator(sel).count() == 0, page.locator(sel).first.inner_text()
    body = page.locator("body").inner_text()
    for bad in BAD_TEXT:
        assert bad not in body, f"{bad!r} on the page"


def wait_images(page, selector: str, n: int) -> None:
    """At least n <img> under selector, loaded (complete, non-zero natural width)."""
    page.wait_for_function(
        """([sel, n]) => [...document.querySelectorAll(sel)]
             .filter(i => i.complete && i.naturalWidth > 0).length >= n""",
        arg=[selector, n], timeout=TIMEOUT_MS)


def screenshot(page, name: str) -> Path:
    """Full height of Streamlit's scrolling main area (page.screenshot(full_page) stops at the
    viewport because the app scrolls inside its own container)."""
    ARTIFACTS.mkdir(exist_ok=True)
    height = page.evaluate("""() => {
        const m = document.querySelector('[data-testid="stMain"]') ||
                  document.querySelector('section.main');
        return m ? m.scrollHeight : document.body.scrollHeight; }""")
    page.set_viewport_size({"width": 1400, "height": max(1000, min(int(height) + 40, 6000))})
    time.sleep(0.5)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def search_by_id(page, poster_id: int) -> float:
    """Type a stored poster's id into Search, wait for its result grid; returns seconds taken."""
    box = page.locator(".st-key-search-query input")
    t0 = time.perf_counter()
    box.fill(str(poster_id))
    box.press("Enter")
    page.get_by_role("heading", name=f"results for #{poster_id}", exact=False).wait_for()
    wait_images(page, ".st-key-search-results img", 1)
    return time.perf_counter() - t0


# -- 1: upload → genres + evidence ---------------------------------------------------------------

def test_upload_shows_genres_and_evidence(browser, tmp_path_factory, label_rows, posters_dir,
                                          model_dir):
    base = tmp_path_factory.mktemp("e2e-classify")
    store = build_store(base, label_rows, posters_dir, model_dir, 200, every=25)
    row = label_rows[1]  # not in the store (every 25th row from 0)
    upload = posters_dir / row["file"]
    key = hashlib.sha256(upload.read_bytes()).hexdigest()[:16]
    with serve(store, model_dir, base / "server.log") as url:
        page = new_page(browser, url)
        assert "200" in page.locator(".st-key-store-counts").inner_text()
        t0 = time.perf_counter()
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(upload))
        genres = page.locator(f".st-key-genres-{key}")
        genres.wait_for()
        wait_images(page, f".st-key-evidence-{key} img", 5)
        seconds = time.perf_counter() - t0
        wait_images(page, f".st-key-evidence-{key} img", 10)  # the page shows 10
        page.locator(f".st-key-genres-{key} [data-testid='stProgress']").first.wait_for(
            timeout=TIMEOUT_MS)
        expected = PosterDB.open(store, create=False, model_dir=model_dir).classify(
            [upload])[0]  # the file name carries no year: the page sends None too
        text = genres.inner_text()
        assert all(g in text for g in expected.genres)
        assert "heads" in page.locator("body").inner_text()
        assert_page_clean(page)
        shot = screenshot(page, "e2e-classify.png")
        print(f"\nupload → genres + 5 evidence images: {seconds:.2f} s (first upload); "
              f"screenshot {shot}")
    assert "Traceback" not in (base / "server.log").read_text()


# -- 2: searches keep answering while `posterdb ingest` writes 1,000 posters ---------------------

def test_search_answers_during_ingest_and_sees_new_posters(browser, tmp_path_factory,
                                                           label_rows, posters_dir, model_dir):
    base = tmp_path_factory.mktemp("e2e-ingest")
    store = build_store(base, label_rows, posters_dir, model_dir, 150, every=33)
    before = PosterDB.open(store, create=False).posters.count()
    incoming = copy_slice(label_rows, posters_dir, base / "incoming", 1000, start=1, every=5)
    (incoming / "labels.csv").unlink()  # bare scans: the trained classifier labels them
    posterdb = shutil.which("posterdb", path=str(Path(sys.executable).parent)) or "posterdb"
    with serve(store, model_dir, base / "server.log") as url:
        page = new_page(browser, url)
        page.locator('[data-testid="stSidebar"]').get_by_text("Search", exact=True).click()
        page.locator(".st-key-search-query input").wait_for()
        search_by_id(page, 1)  # warm: the first search loads the index

        ingest = subprocess.Popen(
            [posterdb, "ingest", str(incoming), "--store", str(store), "--model-dir",
             str(model_dir)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        during, timings, pid = 0, [], 2
        try:
            while True:
                running = ingest.poll() is None
                timings.append(search_by_id(page, pid))
                assert_page_clean(page)
                during += running
                pid = pid % before + 1
                if not running:
                    break
        finally:
            if ingest.poll() is None:
                ingest.kill()
            out = ingest.communicate(timeout=60)[0].decode(errors="replace")
        assert ingest.returncode == 0, out
        assert during >= 3, f"only {during} searches overlapped the ingest: {out}"
        after = PosterDB.open(store, create=False).posters.count()
        assert after > before + 900

        # no restart: the next interaction shows the new count (and finds the new posters)
        search_by_id(page, after)
        counts = page.locator(".st-key-store-counts").inner_text()
        assert f"{after:,}" in counts, counts
        assert_page_clean(page)
        screenshot(page, "e2e-search-after-ingest.png")
        print(f"\n{len(timings)} searches, {during} during the ingest; slowest "
              f"{max(timings):.2f} s, median {sorted(timings)[len(timings) // 2]:.2f} s; "
              f"count {before} → {after}")
    log = (base / "server.log").read_text()
    assert "Traceback" not in log and "StoreBusyError" not in log


# -- 3: who may change the store -----------------------------------------------------------------

PAGE_PASSWORD = "the Odeon, row F, 1925"


def sign_in(page, password: str = PAGE_PASSWORD, key: str = "signin") -> None:
    page.locator(f".st-key-{key}-password input").fill(password)
    page.locator(f".st-key-{key}-submit button").click()


def upload(page, path: Path) -> str:
    key = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(path))
    page.locator(f".st-key-genres-{key}").wait_for()
    page.locator(f".st-key-add-btn-{key} button").wait_for()
    return key


def success(page, text: str) -> None:
    """Wait for the page's green flash that starts with `text`."""
    page.locator('[data-testid="stAlertContentSuccess"]').filter(has_text=text).first.wait_for()


def open_review_queue(page) -> None:
    page.locator('[data-testid="stSidebar"]').get_by_text("Browse & curate", exact=True).click()
    page.locator(".st-key-curate-view").get_by_text("Review queue", exact=True).click()


def test_writes_need_a_signed_in_browser(browser, tmp_path_factory, label_rows, posters_dir,
                                         model_dir):
    from playwright.sync_api import expect

    base = tmp_path_factory.mktemp("e2e-auth")
    store = build_store(base, label_rows, posters_dir, model_dir, 80, every=60)
    auth.set_page_password(PosterDB.open(store, create=False), PAGE_PASSWORD)
    db = PosterDB.open(store, create=False, model_dir=model_dir)
    before = db.posters.count()
    pid = db.curation.queue(limit=1)[0]["id"]
    poster = posters_dir / label_rows[3]["file"]          # not in the store (every 60th from 0)
    with serve(store, model_dir, base / "server.log") as url:
        # a browser that has not signed in: it reads, but cannot add a poster nor set a label
        anon = new_page(browser, url)
        key = upload(anon, poster)
        add = anon.locator(f".st-key-add-btn-{key} button")
        assert add.is_disabled()
        assert anon.get_by_text("Sign in (sidebar) to add posters.").count() == 1
        add.click(force=True)          # what a click does on it anyway: nothing
        open_review_queue(anon)
        accept = anon.locator(f".st-key-review-accept-{pid} button")
        accept.wait_for()
        assert accept.is_disabled()
        accept.click(force=True)
        time.sleep(2)                  # give a write every chance to land
        assert_page_clean(anon)
        screenshot(anon, "e2e-auth-signed-out.png")
        again = PosterDB.open(store, create=False)
        assert again.posters.count() == before and not again.posters.one(pid).reviewed

        # a wrong password is refused with the tries left; the right one signs this browser in
        sign_in(anon, "not the password")
        anon.get_by_text("Wrong password. 4 tries left.").wait_for()
        sign_in(anon)
        anon.get_by_text("Signed in: changes are allowed.").wait_for()
        open_review_queue(anon)
        accept = anon.locator(f".st-key-review-accept-{pid} button")
        expect(accept).to_be_enabled(timeout=TIMEOUT_MS)
        accept.click()
        success(anon, "Reviewed")
        assert PosterDB.open(store, create=False).posters.one(pid).reviewed
        anon.locator('[data-testid="stSidebar"]').get_by_text("Classify", exact=True).click()
        key = upload(anon, poster)
        expect(anon.locator(f".st-key-add-btn-{key} button")).to_be_enabled(timeout=TIMEOUT_MS)
        anon.locator(f".st-key-add-btn-{key} button").click()
        success(anon, "Stored")
        assert PosterDB.open(store, create=False).posters.count() == before + 1
        assert_page_clean(anon)
        screenshot(anon, "e2e-auth-signed-in.png")

        # another browser session is not signed in by the first one's sign-in
        other = new_page(browser, url)
        open_review_queue(other)
        nxt = PosterDB.open(store, create=False).curation.queue(limit=1)[0]["id"]
        other.locator(f".st-key-review-accept-{nxt} button").wait_for()
        assert other.locator(f".st-key-review-accept-{nxt} button").is_disabled()
    log = (base / "server.log").read_text()
    assert "Traceback" not in log and PAGE_PASSWORD not in log


def test_bound_beyond_loopback_refuses_with_one_line_until_a_password_is_set(
        browser, tmp_path_factory, label_rows, posters_dir, model_dir):
    base = tmp_path_factory.mktemp("e2e-exposed")
    src = copy_slice(label_rows, posters_dir, base / "src", 20, every=200)
    db = PosterDB.open(base / "store", model_dir=model_dir)
    db.ingest(src, src / "labels.csv")
    with serve(db.root, model_dir, base / "server.log", address="0.0.0.0") as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        alert = page.locator('[data-testid="stAlertContentError"]')
        alert.wait_for()
        time.sleep(1)                    # let the run finish drawing (it draws nothing more)
        line = alert.inner_text().strip()
        assert line == ("Refused: this page is served beyond loopback (it listens on 0.0.0.0) "
                        "and no page password is set. Set one with `posterdb page password`, "
                        "or serve on 127.0.0.1.").replace("`", "")
        assert alert.count() == 1 and page.locator('[data-testid="stSidebar"]').count() == 0
        body = page.locator('[data-testid="stMain"]').inner_text().strip()
        assert body == line and str(db.root) not in page.content()
        screenshot(page, "e2e-refused-0.0.0.0.png")
        # set a password the real way (stdin, not argv): the same server now asks for it
        r = subprocess.run([*posterdb_cmd(), "page", "password", "--store", str(db.root)],
                           input=PAGE_PASSWORD + "\n", env=subprocess_env(),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        page.reload()
        page.locator(".st-key-gate-password input").wait_for()
        assert page.locator('[data-testid="stSidebar"]').count() == 0
        assert "posters" not in page.locator('[data-testid="stMain"]').inner_text()
        sign_in(page, key="gate")
        page.get_by_role("heading", name="Classify a poster").wait_for()
        assert "20" in page.locator(".st-key-store-counts").inner_text()
        assert_page_clean(page)
    log = (base / "server.log").read_text()
    assert "page refused: served beyond loopback (it listens on 0.0.0.0)" in log
    assert "Traceback" not in log
