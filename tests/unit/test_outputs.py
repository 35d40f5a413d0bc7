"""Run folders and single output files are replaced whole, or not at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perphedge.errors import ConfigError
from perphedge.usecases import outputs
from perphedge.usecases.outputs import check_output_dir, write_file_atomic, write_run_folder


def _writer(text: str):  # type: ignore[no-untyped-def]
    return lambda p: p.write_text(text)


def _names(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()}


@pytest.mark.parametrize("exchange", [True, False])
def test_a_folder_is_replaced_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool) -> None:
    if not exchange:  # the portable path: rename aside, rename in
        monkeypatch.setattr(outputs, "_exchange", lambda a, b: False)
    out = tmp_path / "run"
    files = write_run_folder(out, {"result.json": _writer("{}"), "report.png": _writer("png")}, config_hash="a")
    assert [f.name for f in files] == ["result.json", "report.png", "manifest.json"]
    assert _names(out) == {"result.json", "report.png", "manifest.json"}
    write_run_folder(out, {"result.json": _writer('{"x": 1}')}, config_hash="b")
    assert _names(out) == {"result.json", "manifest.json"}  # the stale report.png left with its run
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config_hash"] == "b" and set(manifest["files"]) == {"result.json"}
    assert manifest["files"]["result.json"]["bytes"] == len('{"x": 1}')
    assert _names(tmp_path) == {"run"}  # nothing hidden left beside it


def test_a_failing_writer_changes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    write_run_folder(out, {"result.json": _writer("old")}, config_hash="a")

    def boom(p: Path) -> None:
        p.write_text("half")
        raise RuntimeError("plot failed")

    with pytest.raises(RuntimeError):
        write_run_folder(out, {"result.json": _writer("new"), "report.html": boom}, config_hash="b")
    assert (out / "result.json").read_text() == "old" and _names(out) == {"result.json", "manifest.json"}
    assert _names(tmp_path) == {"run"}


def test_leftovers_of_a_killed_run_are_cleaned(tmp_path: Path) -> None:
    (tmp_path / ".run.perphedge-new-abc").mkdir()
    (tmp_path / ".run.perphedge-old-def").mkdir()
    (tmp_path / ".run.perphedge-old-def" / "result.json").write_text("x")
    write_run_folder(tmp_path / "run", {"result.json": _writer("{}")}, config_hash="a")
    assert _names(tmp_path) == {"run"}


def test_output_folder_checks(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(ConfigError, match=r"invalid `--out`: .*/f is a file, not a directory"):
        check_output_dir(f)
    with pytest.raises(ConfigError, match=r"cannot create .*/f/a: .*/f is a file"):
        check_output_dir(f / "a" / "b")
    d = tmp_path / "d"
    d.mkdir()
    (d / "result.json").write_text("{}")
    assert check_output_dir(d) == d  # a previous run's folder is fine
    (d / "mine.csv").write_text("x")
    with pytest.raises(ConfigError, match=r"mine.csv.*one run's files"):
        check_output_dir(d)
    assert not (tmp_path / "new").exists()
    check_output_dir(tmp_path / "new" / "deeper")
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_single_files_are_replaced_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "a" / "sweep.json"
    write_file_atomic(target, "one")
    write_file_atomic(target, "two")
    assert target.read_text() == "two" and _names(target.parent) == {"sweep.json"}
    with pytest.raises(ConfigError, match="is a directory"):
        write_file_atomic(tmp_path / "a", "x")

    def fail(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outputs.os, "replace", fail)
    with pytest.raises(ConfigError, match=r"cannot write .*sweep.json: No space left on device"):
        write_file_atomic(target, "three")
    assert target.read_text() == "two" and _names(target.parent) == {"sweep.json"}


def test_a_symlinked_folder_keeps_its_link(tmp_path: Path) -> None:
    real = tmp_path / "real"
    write_run_folder(real, {"result.json": _writer("old")}, config_hash="a")
    link = tmp_path / "link"
    link.symlink_to(real)
    write_run_folder(link, {"result.json": _writer("new")}, config_hash="b")
    assert link.is_symlink() and (link / "result.json").read_text() == "new"
    assert _names(tmp_path) == {"real", "link"}


def test_special_files_are_never_replaced(tmp_path: Path) -> None:
    """A device, a named pipe or a link to one is refused as an output file: renaming over it would replace the
    node itself (`--write /dev/full` as root turned the device into a plain file)."""
    import os

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "null-link"
    link.symlink_to("/dev/null")
    for target in (fifo, link, Path("/dev/null")):
        with pytest.raises(ConfigError, match="not a regular file"):
            write_file_atomic(target, "x", "--write")
    assert fifo.exists() and not fifo.is_file() and link.is_symlink()
    assert Path("/dev/null").is_char_device()
