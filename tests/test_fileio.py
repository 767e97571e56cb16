"""Atomic writes: a failure leaves the old file and no temporary behind."""
import stat

import pytest

from fashion_gluon.fileio import atomic_path, atomic_write


def test_atomic_write_replaces_on_success_and_keeps_old_on_failure(tmp_path):
    target = tmp_path / "sub" / "file.csv"
    with atomic_write(target) as handle:
        handle.write("first")
    assert target.read_text() == "first"
    assert stat.S_IMODE(target.stat().st_mode) & 0o044, "readable by others like any normal file"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as handle:
            handle.write("half")
            raise RuntimeError("killed")
    assert target.read_text() == "first"
    assert [p.name for p in target.parent.iterdir()] == ["file.csv"]


def test_atomic_path_for_writers_that_take_a_name(tmp_path):
    target = tmp_path / "w.params"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".params" and tmp != target
        tmp.write_bytes(b"abc")
        assert not target.exists()
    assert target.read_bytes() == b"abc" and len(list(tmp_path.iterdir())) == 1
