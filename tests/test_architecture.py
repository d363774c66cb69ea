"""Issue 8: one direction of dependencies, SQL only in the catalogue, errors as one line with the
right exit code before any store is made, versioned stores and classifiers, the approximate
index path.

Stores here use the deterministic `fake-pixels` embedder on synthetic posters (fast, no
../shared); the behaviour under test does not depend on what the vectors mean.
"""
from __future__ import annotations

import ast
import dataclasses
import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest
from synthetic import (
    make_posters,  # tests/ is on sys.path (rootdir conftest, no __init__.py)
)
from typer.testing import CliRunner

from posterdb.classify.persist import FORMAT_VERSION, load_classifier, save_classifier
from posterdb.core.errors import ClassifierFormatError, SchemaVersionError, UsageError
from posterdb.storage.catalog import MIGRATIONS, SCHEMA_VERSION
from posterdb.store import PosterDB
from posterdb.testing.slices import posterdb_cmd, subprocess_env
from posterdb.ui.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
FAKE = "fake-pixels"
runner = CliRunner()


def run(*args: str) -> tuple[int, dict | list | str, str]:
    res = runner.invoke(app, list(args))
    try:
        return res.exit_code, json.loads(res.stdout), res.stdout
    except json.JSONDecodeError:
        return res.exit_code, res.stdout, res.stdout + repr(res.exception)


@pytest.fixture(scope="module")
def fake_store(tmp_path_factory) -> tuple[Path, Path]:
    src = make_posters(tmp_path_factory.mktemp("src"), 40, seed=1)
    store = tmp_path_factory.mktemp("fake") / "store"
    report = PosterDB.open(store).ingest(src, src / "labels.csv", model=FAKE)
    assert report.added == 40 and not report.failed
    return src, store


# -- dependencies ---------------------------------------------------------------------------

LIBRARY = sorted((ROOT / "posterdb").rglob("*.py"))
# capability packages, lowest first: a package imports only packages before it (or itself)
LAYERS = ["core", "media", "embedders", "storage", "vectors", "maintenance", "classify", "ingest",
          "tmdb", "curation", "finetune", "reading", "(root)", "ui", "testing"]


def _imports(path: Path) -> set[str]:
    """Absolute module names imported by a posterdb module (relative imports resolved)."""
    pkg = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = pkg.split(".")
            base = base[:len(base) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            names.add(mod)
            names |= {f"{mod}.{a.name}" for a in node.names}
    return names


def _package(path: Path) -> str:
    parts = path.relative_to(ROOT / "posterdb").parts
    return parts[0] if len(parts) > 1 else "(root)"


def _package_of_module(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] != "posterdb" or len(parts) < 2 or parts[1] == "__version__":
        return None
    return parts[1] if parts[1] in LAYERS else "(root)"


def test_capabilities_are_folders_and_depend_one_way():
    top = sorted(p.name for p in (ROOT / "posterdb").glob("*.py"))
    assert len(top) <= 5, top
    folders = sorted(p.name for p in (ROOT / "posterdb").iterdir()
                     if p.is_dir() and (p / "__init__.py").exists())
    assert set(folders) == set(LAYERS) - {"(root)"}, folders
    wrong = []
    for p in LIBRARY:
        mine = LAYERS.index(_package(p))
        for name in _imports(p):
            other = _package_of_module(name)
            if other is not None and LAYERS.index(other) > mine:
                wrong.append(f"{p.relative_to(ROOT)} imports {name}")
    assert wrong == []
    core = [f"{p.relative_to(ROOT)}: {n}" for p in LIBRARY if _package(p) == "core"
            for n in _imports(p) if n.startswith("posterdb.") and not n.startswith("posterdb.core")]
    assert core == []


def test_nothing_below_the_root_imports_it():
    below = [p for p in LIBRARY if _package(p) not in ("ui", "testing", "(root)")]
    assert len(below) > 60
    offenders = [str(p.relative_to(ROOT)) for p in below if "posterdb.store" in _imports(p)]
    assert offenders == []


def test_the_root_hands_services_objects_not_callbacks():
    """PosterDB builds each service with typed collaborators: no lambda, no bound method of
    its own passed down (a call would go root → service → root)."""
    tree = ast.parse((ROOT / "posterdb" / "store.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "PosterDB")
    methods = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    passed = []
    for node in ast.walk(cls):
        if isinstance(node, ast.Call):
            for arg in list(node.args) + [k.value for k in node.keywords]:
                if isinstance(arg, ast.Lambda):
                    passed.append(f"line {arg.lineno}: a lambda")
                for sub in ast.walk(arg):
                    if (isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name)
                            and sub.value.id == "self" and sub.attr in methods):
                        passed.append(f"line {sub.lineno}: self.{sub.attr}")
    assert passed == []
    public = sorted(m for m in methods if not m.startswith("_"))
    assert len(public) <= 12, public


def test_the_environment_is_read_only_by_the_settings_module():
    reads = re.compile(r"os\.environ|getenv\(|envvar=")
    offenders = [str(p.relative_to(ROOT)) for p in LIBRARY + [ROOT / "app.py"]
                 if reads.search(p.read_text()) and _package(p) != "testing"
                 and p != ROOT / "posterdb" / "core" / "settings.py"]
    assert offenders == []


def test_thresholds_are_stated_once_in_the_settings_module():
    literal = re.compile(r"\b0\.9[07]\b")
    offenders = [f"{p.relative_to(ROOT)}:{i}" for p in LIBRARY + [ROOT / "app.py"]
                 for i, line in enumerate(p.read_text().splitlines(), 1)
                 if literal.search(line) and p != ROOT / "posterdb" / "core" / "settings.py"]
    assert offenders == []


def test_the_cli_lives_in_the_package():
    assert not (ROOT / "cli").exists()
    r = subprocess.run([sys.executable, "-c", "import importlib.util as u; s = u.find_spec('cli'); "
                        "print(s.origin if s else '')"], cwd=ROOT, capture_output=True, text=True,
                       env=subprocess_env(), timeout=60)
    assert r.returncode == 0 and str(ROOT) not in r.stdout
    r = subprocess.run(posterdb_cmd() + ["--help"], capture_output=True, text=True,
                       env=subprocess_env(), timeout=60)
    assert r.returncode == 0 and "ingest" in r.stdout and "<bool>" not in r.stdout


def test_the_command_line_imports_no_store_code_until_a_command_runs():
    """`posterdb --help` pays for Typer alone (`python -m bench --only startup`)."""
    code = ("import sys, json; import posterdb.ui.cli.main; "
            "print(json.dumps([m for m in ('duckdb', 'faiss', 'numpy', 'PIL', 'sklearn', 'torch')"
            " if m in sys.modules]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=subprocess_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == []


def test_opening_a_store_and_info_import_no_training_code(fake_store):
    """`posterdb info` pays only for what it shows: no scikit-learn, SciPy, torch, pandas,
    OCR or plotting (measured against `python -c pass` in `python -m bench --only startup`)."""
    _, store = fake_store
    code = ("import sys, json; from typer.testing import CliRunner; "
            "from posterdb.ui.cli.main import app; "
            f"r = CliRunner().invoke(app, ['info', '--store', {str(store)!r}, '--json']); "
            "assert r.exit_code == 0, r.output; "
            "heavy = ['sklearn', 'scipy', 'torch', 'pandas', 'matplotlib', 'rapidocr_onnxruntime',"
            " 'onnxruntime', 'streamlit', 'ray']; "
            "print(json.dumps([m for m in heavy if m in sys.modules]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=subprocess_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == []


def test_sql_only_in_the_catalogue_and_no_private_reach():
    call = re.compile(r"\.(execute|executemany|sql)\(")
    files = LIBRARY + [ROOT / "app.py"]
    sql = [str(p.relative_to(ROOT)) for p in files
           if call.search(p.read_text()) and "catalog" not in p.relative_to(ROOT).parts]
    assert sql == []
    private = [str(p.relative_to(ROOT)) for p in files
               if re.search(r"\b(db|self\.db|catalog|index|clf)\._[a-z]", p.read_text())]
    assert private == []


def test_modules_stay_small():
    """No module over 400 lines, classify/ included: past that a module holds two jobs."""
    big = {str(p.relative_to(ROOT)): n for p in LIBRARY + [ROOT / "app.py"] if (n := len(p.read_text().splitlines())) > 400}
    assert big == {}


# -- records ---------------------------------------------------------------------------------

# what `posterdb export --format json` printed per poster while stored posters were dicts
EXPORT_KEYS = ["id", "sha256", "path", "image_path", "title", "year", "decade", "width", "height",
               "format", "source", "added_at", "genres", "predicted", "published", "reviewed",
               "image", "identified"]


def test_stored_posters_keep_the_export_keys_and_cached_records_cannot_change(fake_store):
    _, store = fake_store
    code, rows, raw = run("export", "--format", "json", "--store", str(store))
    assert code == 0 and rows and all(list(r) == EXPORT_KEYS for r in rows), raw[:500]
    db = PosterDB.open(store, create=False)
    assert [p.to_dict() for p in db.posters.export()] == rows
    assert list(db.posters.one(1).to_dict()) == EXPORT_KEYS[:-1]   # `identified`: export only
    first = db.posters.get([1, 2])
    kept = [p.to_dict() for p in first]
    with pytest.raises(dataclasses.FrozenInstanceError):
        first[0].genres = ("Western",)
    with pytest.raises(AttributeError):
        first[0].genres.append("Western")
    first[0].to_dict()["genres"].append("Western")
    dataclasses.replace(first[0], title="Changed", genres=("Western",))
    again = db.posters.get([1, 2])
    assert [p.to_dict() for p in again] == kept and again == first


# -- errors: one line, the right exit code, nothing created ----------------------------------

def test_every_command_refuses_a_bad_argument_before_making_a_store(tmp_path, fake_store):
    src, store = fake_store
    img = next((src / "images").iterdir())
    new = tmp_path / "new-store"
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    cases = {
        "ingest": ["ingest", str(src), "--model", "no-such-model", "--store", str(new)],
        "ingest-path": ["ingest", str(tmp_path / "missing"), "--store", str(new)],
        "info": ["info", "--store", str(a_file)],
        "check": ["check", "--store", str(a_file)],
        "similar": ["similar", "1", "-k", "0", "--store", str(new)],
        "similar-genre": ["similar", "1", "--genre", "Biography", "--store", str(new)],
        "remove": ["remove", "0", "--store", str(new)],
        "export": ["export", "--format", "xml", "--store", str(new)],
        "reindex": ["reindex", "--model", "nope", "--store", str(new)],
        "migrate": ["migrate", "--store", str(new)],
        "train": ["train", "--model", "nope", "--store", str(new)],
        "classify": ["classify", str(img), "--year", "3000", "--store", str(new)],
        "classify-path": ["classify", str(tmp_path / "missing.jpg"), "--store", str(new)],
        "eval": ["eval", "--test-decades", "99999", "--store", str(new)],
    }
    for name, args in cases.items():
        code, data, raw = run(*args, "--json")
        assert code == 2, (name, raw)
        assert isinstance(data, dict) and set(data) == {"error", "type"}, (name, raw)
        assert data["type"] == "UsageError" or name == "ingest-path", (name, data)
        assert "Traceback" not in raw
        assert not new.exists(), name
        res = runner.invoke(app, args)  # without --json: one line on stderr, nothing on stdout
        lines = res.stderr.strip().splitlines()
        assert res.exit_code == 2 and res.stdout == "", (name, res.output)
        assert len(lines) == 1 and lines[0].startswith("error:"), (name, res.stderr)


def test_cli_subprocess_bad_model_json_no_traceback_no_store(tmp_path, fake_store):
    src, _ = fake_store
    new = tmp_path / "store"
    r = subprocess.run(posterdb_cmd() + ["ingest", str(src), "--model", "no-such-model",
                                         "--json", "--store", str(new)],
                       env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert json.loads(r.stdout)["type"] == "UsageError" and "no-such-model" in r.stdout
    assert "Traceback" not in r.stderr and not new.exists()
    # a value Typer itself rejects is also one JSON object with --json
    r = subprocess.run(posterdb_cmd() + ["similar", "1", "-k", "abc", "--json", "--store",
                                         str(new)],
                       env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "error" in json.loads(r.stdout) and not new.exists()


def test_library_usage_errors_are_value_errors(fake_store):
    _, store = fake_store
    db = PosterDB.open(store, create=False)
    with pytest.raises(UsageError):
        db.curation.set_genres(1, ["Biography"])
    with pytest.raises(ValueError):
        db.curation.set_genres(1, [])


# -- versions ----------------------------------------------------------------------------------

def test_newer_store_is_refused_with_one_line(tmp_path):
    root = tmp_path / "s"
    PosterDB.open(root)
    con = duckdb.connect(str(root / "catalog.duckdb"))
    con.execute("INSERT INTO schema_migrations (version) VALUES (?)", [SCHEMA_VERSION + 5])
    con.close()
    for create in (False, True):
        with pytest.raises(SchemaVersionError, match="newer posterdb"):
            PosterDB.open(root, create=create)
    code, data, _ = run("info", "--store", str(root), "--json")
    assert code == 3 and data["type"] == "SchemaVersionError" and "upgrade" in data["error"]
    res = runner.invoke(app, ["ingest", str(tmp_path), "--store", str(root), "--model", FAKE])
    assert res.exit_code == 3 and res.stderr.count("\n") == 1 and "newer posterdb" in res.stderr


def test_older_store_reader_is_told_to_migrate_and_a_writer_migrates(tmp_path):
    root = tmp_path / "old"
    root.mkdir()
    con = duckdb.connect(str(root / "catalog.duckdb"))  # a store as posterdb 0.1.0 left it
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
                "applied_at TIMESTAMP DEFAULT current_timestamp)")
    con.execute(MIGRATIONS[0].sql)
    con.execute("INSERT INTO schema_migrations (version) VALUES (1)")
    con.close()
    with pytest.raises(SchemaVersionError, match="posterdb migrate"):
        PosterDB.open(root, create=False)
    code, data, _ = run("migrate", "--store", str(root), "--json")
    assert code == 0 and data["schema_version"] == SCHEMA_VERSION
    db = PosterDB.open(root, create=False)
    assert db.info()["posters"] == 0
    with db.catalog.write() as con:  # origins are no longer fixed by a CHECK constraint
        con.execute("INSERT INTO genre_labels (poster_id, genre, origin) VALUES (1, 'Drama', 'x')")


def test_classifier_of_another_format_says_retrain(tmp_path, fake_store):
    old = tmp_path / "old.joblib"
    data = pickle.dumps({"a": 1})
    old.write_bytes(data)
    import hashlib
    with pytest.raises(ClassifierFormatError, match="retrain"):
        load_classifier(old, hashlib.sha256(data).hexdigest())
    future = tmp_path / "future.joblib"
    digest = save_classifier({"a": 1}, future)
    future.write_bytes(future.read_bytes().replace(f'"format": {FORMAT_VERSION}'.encode(), b'"format": 9'))
    with pytest.raises(ClassifierFormatError, match="format 9.*retrain"):
        load_classifier(future, hashlib.sha256(future.read_bytes()).hexdigest())
    assert load_classifier(tmp_path / "ok.joblib", save_classifier({"a": 1}, tmp_path / "ok.joblib")) == {"a": 1}
    assert digest
    # in a store: a classifier file of format 1 is refused by `classify` with one line, exit 3
    _, store = fake_store
    rel = "classifiers/old-format.joblib"
    (store / "classifiers").mkdir(exist_ok=True)
    (store / rel).write_bytes(data)
    db = PosterDB.open(store)
    with db.catalog.write() as con:
        db.catalog.insert_classifier(con, FAKE, rel, hashlib.sha256(data).hexdigest(), 40, "{}",
                                     1, "0.1.0")
    try:
        img = next((store / "images").rglob("*.png"))
        code, out, raw = run("classify", str(img), "--store", str(store), "--json")
        assert code == 3 and out["type"] == "ClassifierFormatError" and "retrain" in out["error"]
        more = make_posters(tmp_path / "more", 2, seed=9)   # ingest goes on, without predicting
        report = PosterDB.open(store).ingest(more, model=FAKE)
        assert report.added == 2 and "retrain" in report.warnings[0] and report.predicted == 0
    finally:
        with db.catalog.write() as con:
            con.execute("DELETE FROM classifiers WHERE file = ?", [rel])


# -- symlinked folders (issue 8) ---------------------------------------------------------------

def test_folder_of_symlinks_ingests_images_and_labels(tmp_path):
    real = make_posters(tmp_path / "elsewhere", 6, seed=2)
    links = tmp_path / "mine"
    (links / "images").mkdir(parents=True)
    for p in sorted((real / "images").iterdir()):
        (links / "images" / p.name).symlink_to(p)
    (tmp_path / "x.jpg").write_bytes((real / "images" / "p020000.png").read_bytes())
    text = (real / "labels.csv").read_text() + "../x.jpg,Escapee,1975,Drama\n"
    (links / "labels.csv").write_text(text)
    report = PosterDB.open(tmp_path / "s").ingest(links, links / "labels.csv", model=FAKE)
    assert report.added == 6
    assert [f["reason"] for f in report.failed] == ["labels row 7: path escapes the labels folder"]
    posters = PosterDB.open(tmp_path / "s").posters.get()
    assert all(p.genres and p.title.startswith("Poster ") for p in posters)


# -- the approximate index at small scale --------------------------------------------------

def test_approximate_index_ids_filtered_search_and_sync(tmp_path):
    from posterdb.vectors.index import choose_factory

    src = make_posters(tmp_path / "src", 300, seed=3)
    db = PosterDB.open(tmp_path / "s", exact_max=100)
    db.ingest(src, src / "labels.csv", model=FAKE)
    db = PosterDB.open(tmp_path / "s", exact_max=100)   # a fresh reader: load, compare, rebuild
    index = db.indexes.index()
    assert index.factory == choose_factory(300, exact_max=100) != "Flat" and len(index) == 300
    assert np.array_equal(index.ids(), np.arange(1, 301))
    hits = db.similar(5, 10, decades=[1970])
    assert hits and {h.decade for h in hits} == {1970} and 5 not in [h.id for h in hits]
    exact = db.similar(db.search.vectors([7])[0], 1)
    assert exact[0].id == 7 and exact[0].similarity > 0.999
    assert db.remove([1, 2, 3]) == [1, 2, 3]
    fresh = PosterDB.open(tmp_path / "s", exact_max=100)
    assert fresh.indexes.state().status == "loaded" and len(fresh.indexes.index()) == 297
    assert 1 not in fresh.indexes.index().ids()
    # the file fell behind (an older copy): the next open syncs it from DuckDB
    extra = make_posters(tmp_path / "more", 5, seed=4)
    old = (tmp_path / "s" / "index" / "fake_pixels.faiss").read_bytes()
    fresh.ingest(extra, extra / "labels.csv", model=FAKE)
    (tmp_path / "s" / "index" / "fake_pixels.faiss").write_bytes(old)
    again = PosterDB.open(tmp_path / "s", exact_max=100)
    state = again.indexes.state()
    assert state.status == "synced" and state.added == 5 and len(again.indexes.index()) == 302
    assert again.check()["ok"]


def test_litert_info_line_is_silenced(tmp_path, model_dir):
    src = make_posters(tmp_path / "src", 2, seed=8)
    r = subprocess.run(posterdb_cmd() + ["ingest", str(src), "--store", str(tmp_path / "s"),
                                         "--model-dir", str(model_dir), "--json"],
                       env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["added"] == 2
    assert "XNNPACK" not in r.stdout + r.stderr
