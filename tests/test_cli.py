"""The `posterdb` command through Typer's runner: --json output and exit codes on a real store."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from posterdb.ui.cli.main import app

runner = CliRunner()


def run(*args: str) -> tuple[int, dict | list | str]:
    res = runner.invoke(app, list(args))
    try:
        return res.exit_code, json.loads(res.stdout)
    except json.JSONDecodeError:
        return res.exit_code, res.stdout + str(res.exception or "")


@pytest.fixture(scope="module")
def cli_store(tmp_path_factory, label_rows, posters_dir, model_dir):
    from tests.conftest import copy_slice

    src = copy_slice(label_rows, posters_dir, tmp_path_factory.mktemp("src"), 60, start=3, every=60)
    store = tmp_path_factory.mktemp("cli") / "store"
    common = ["--store", str(store), "--model-dir", str(model_dir)]
    code, data = run("ingest", str(src), "--labels", str(src / "labels.csv"), *common, "--json")
    assert code == 0, data
    return src, store, common, data


def test_ingest_json_and_rerun(cli_store):
    src, store, common, first = cli_store
    assert first["added"] == 60 and first["failed"] == [] and first["posters_per_s"] > 0
    code, again = run("ingest", str(src), "--labels", str(src / "labels.csv"), *common, "--json")
    assert code == 0 and again["added"] == 0 and again["skipped"] == 60


def test_info_check_similar_export(cli_store, tmp_path):
    src, store, common, _ = cli_store
    code, info = run("info", *common, "--json")
    assert code == 0 and info["posters"] == 60 and info["models"][0]["vectors"] == 60
    code, report = run("check", "--store", str(store), "--json")
    assert code == 0 and report["ok"]
    code, sim = run("similar", "1", "-k", "5", *common, "--json")
    assert code == 0 and len(sim["hits"]) == 5 and all(h["title"] for h in sim["hits"])
    code, sim70 = run("similar", "1", "-k", "5", "--decade", "1975", *common, "--json")
    assert code == 0 and sim70["hits"] and {h["decade"] for h in sim70["hits"]} == {1970}
    out = tmp_path / "all.csv"
    code, _ = run("export", "--format", "csv", "-o", str(out), "--store", str(store))
    assert code == 0 and len(out.read_text().splitlines()) == 61


def test_failures_give_exit_codes(cli_store, tmp_path):
    src, store, common, _ = cli_store
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    code, data = run("ingest", str(bad), *common, "--json")
    assert code == 1 and data["failed"][0]["path"].endswith("broken.jpg")
    code, data = run("similar", "1", "--genre", "Biography", *common, "--json")
    assert code == 2 and "Biography" in data["error"]  # a bad argument: 2 (issue 8; was 3)
    code, data = run("similar", "1", "--store", str(tmp_path / "none"), "--json")
    assert code == 3 and "no posterdb store" in data["error"]
    # info only reports: a folder with no store is zeros, exit 0, and nothing is created
    code, data = run("info", "--store", str(tmp_path / "none"), "--json")
    assert code == 0 and data["exists"] is False and data["posters"] == 0 and data["models"] == []
    assert not (tmp_path / "none").exists()
    code, data = run("remove", "99999", "--store", str(store), "--json")
    assert code == 1 and data["not_found"] == [99999]


def test_remove_then_check_clean(cli_store):
    src, store, common, _ = cli_store
    code, data = run("remove", "2", "3", "--store", str(store), "--json")
    assert code == 0 and data["removed"] == [2, 3]
    code, report = run("check", "--store", str(store), "--json")
    assert code == 0 and report["ok"] and report["posters"] == 58
    code, data = run("reindex", "--store", str(store), "--json")
    assert code == 0 and data["indexes"][0]["ntotal"] == 58


def test_train_classify_save_and_eval(cli_store, tmp_path, posters_dir, label_rows):
    src, store, common, _ = cli_store
    code, trained = run("train", *common, "--json")
    assert code == 0 and trained["n_train"] >= 50 and trained["sha256"]
    row = label_rows[1000]
    img = posters_dir / row["file"]
    code, out = run("classify", str(img), "--year", row["year"], "-n", "6", *common, "--json")
    assert code == 0, out
    (res,) = out["results"]
    assert res["genres"] and set(res["probabilities"]) >= set(res["genres"])
    assert 0 <= res["alpha"] <= 1 and res["year"] == int(row["year"])
    assert len(res["evidence"]) == 6
    ev = res["evidence"][0]
    assert {"id", "similarity", "title", "year", "genres", "image", "shared"} <= set(ev)
    assert all(set(e["shared"]) <= set(res["genres"]) for e in res["evidence"])
    # --save stores the new poster with its predictions; a bad file fails with exit 1
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    code, out = run("classify", str(img), str(bad), "--save", *common, "--json")
    assert code == 1 and out["failed"][0]["path"].endswith("bad.jpg") and len(out["saved"]) == 1
    code, info = run("info", *common, "--json")
    assert sum(info["predicted_by_genre"].values()) >= 1
    code, report = run("eval", "--no-matrix", "--seed", "1", *common, "--json")
    assert code == 0, report
    assert set(report["methods"]) == {"study_svm", "study_svm_balanced", "heads", "vote", "blend"}
    assert set(report["methods"]["blend"]["averages"]) >= {"micro", "macro", "weighted", "samples"}
    assert (store / "eval" / "latest.json").exists() and (store / "eval" / "latest.png").exists()


def test_train_max_train_reports_memory_and_eval_compares_heads(cli_store):
    _, store, common, _ = cli_store
    code, trained = run("train", "--max-train", "30", *common, "--json")
    assert code == 0, trained
    assert trained["n_train"] == 30 and trained["n_labelled"] > 30 and trained["heads"] == "exact"
    assert trained["peak_rss_mib"] > 50 and trained["seconds"] > 0
    assert set(trained["stage_seconds"]) >= {"heads", "vote_and_selection", "total"}
    code, out = run("train", "--max-train", "5", *common, "--json")
    assert code == 2 and "--max-train" in out["error"]
    code, report = run("eval", "--no-matrix", "--compare-heads", "nystroem", *common, "--json")
    assert code == 0, report
    assert {"heads", "blend", "heads[nystroem]", "blend[nystroem]"} <= set(report["methods"])
    assert report["classifier"]["heads"] == "exact"
    assert report["classifier"]["compared"]["heads"] == "nystroem"
    assert "exact RBF SVMs" in report["methods"]["heads"]["label"]
    code, out = run("eval", "--heads", "svm", *common, "--json")
    assert code == 2 and "--heads" in out["error"]
