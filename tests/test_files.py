"""Atomic writes: the previous file survives a writer that fails, and no temporary file is left."""

from __future__ import annotations

import json

import pytest

from dinomed.files import atomic_write, write_json


def test_text_bytes_and_writer_functions(tmp_path) -> None:
    assert atomic_write(tmp_path / "a" / "t.txt", "é").read_text(encoding="utf-8") == "é"
    assert atomic_write(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert atomic_write(tmp_path / "c.txt", lambda tmp: tmp.write_text("via writer")).read_text() == "via writer"
    assert json.loads(write_json(tmp_path / "d.json", {"x": float("nan"), "p": tmp_path}).read_text())["p"] == str(tmp_path)


def test_a_failing_writer_keeps_the_previous_file(tmp_path) -> None:
    target = atomic_write(tmp_path / "weights.bin", b"good")

    def crash(tmp):
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, crash)
    assert target.read_bytes() == b"good" and sorted(p.name for p in tmp_path.iterdir()) == ["weights.bin"]
