"""posterdb.atomic: the one place files are replaced, so a kill or an error never leaves half a file."""
from __future__ import annotations

import stat

import pytest

from posterdb.core.atomic import replacing, write_atomic


def test_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "report.json"
    write_atomic(target, b"first")
    write_atomic(target, b"second, longer")
    assert target.read_bytes() == b"second, longer"
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.json"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # not mkstemp's 0600


def test_an_error_while_writing_keeps_the_old_file(tmp_path):
    target = tmp_path / "labels.csv"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with replacing(target, suffix=".part") as f:
            f.write(b"half of the new")
            raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["labels.csv"]


def test_temp_file_sits_beside_the_target_until_the_block_ends(tmp_path):
    target = tmp_path / "index.faiss"
    with replacing(target, fsync=False) as f:
        f.write(b"x")
        temps = [p.name for p in tmp_path.iterdir()]
        assert len(temps) == 1 and temps[0].startswith(".index.faiss.") and temps[0].endswith(".tmp")
        assert not target.exists()
    assert target.read_bytes() == b"x"
