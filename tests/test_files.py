"""Tests for dbsal_backend.engine.files: writes that replace a file whole or not at all."""

import os

import pytest

from dbsal_backend.engine.files import atomic_write, atomic_write_bytes


def test_atomic_write_replaces_the_file_whole(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")
    with atomic_write(path, fsync=True) as handle:
        handle.write(b"new")
        assert path.read_bytes() == b"old"  # readers see the old file until the end
    assert path.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_a_failed_write_keeps_the_old_file_and_no_temporary_one(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")
    with pytest.raises(OSError, match="disk full"):
        with atomic_write(path) as handle:
            handle.write(b"partial")
            raise OSError("disk full")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.bin"]
    with pytest.raises(FileNotFoundError):  # the folder must exist
        atomic_write_bytes(tmp_path / "absent" / "f.bin", b"x")
