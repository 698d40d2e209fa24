"""atomic_output: all-or-nothing outputs that keep links, modes and special files working."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dtxfast._fs import atomic_output


def test_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    out.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_output(out) as fh:
        fh.write(b"new")
        raise RuntimeError("midway")
    assert out.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.bin"]


def test_success_replaces_and_keeps_the_mode(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    out.write_bytes(b"old")
    out.chmod(0o640)
    with atomic_output(out) as fh:
        fh.write(b"new")
    assert out.read_bytes() == b"new" and stat.S_IMODE(out.stat().st_mode) == 0o640


def test_new_files_are_private_unless_asked(tmp_path: Path) -> None:
    with atomic_output(tmp_path / "secret") as fh:
        fh.write(b"x")
    with atomic_output(tmp_path / "shared", private=False) as fh:
        fh.write(b"x")
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "shared").stat().st_mode) == 0o666 & ~mask


def test_a_symlink_stays_and_its_target_is_replaced(tmp_path: Path) -> None:
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    with atomic_output(link, "w") as fh:
        fh.write("new")
    assert link.is_symlink() and real.read_text() == "new"


def test_a_special_file_is_written_directly(tmp_path: Path) -> None:
    r, w = os.pipe()
    try:
        with atomic_output(f"/proc/self/fd/{w}", "wb") as fh:
            fh.write(b"through the pipe")
        assert os.read(r, 100) == b"through the pipe"
    finally:
        os.close(r)
        os.close(w)
    assert list(tmp_path.iterdir()) == []
