"""``perphedge.cli.main`` in-process: the top-level guard and the exit codes.

An internal error (any exception that is not a PerphedgeError) is injected by patching the use
case a command calls; no hook exists in the product for it.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from perphedge.cli import main
from perphedge.errors import DataError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = str(REPO / "examples" / "altcoins.yaml")


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _raise(exc: BaseException):  # type: ignore[no-untyped-def]
    def boom(*args: object, **kwargs: object) -> None:
        raise exc

    return boom


@pytest.fixture
def broken_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    import perphedge.usecases.plan as uc

    monkeypatch.setattr(uc, "plan_from_file", _raise(RuntimeError("boom: a bug of ours")))


def test_internal_error_is_one_line_exit_1(broken_plan: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", EXAMPLE]) == 1
    err = capsys.readouterr().err
    assert _lines(err) == [
        "perphedge: internal error: RuntimeError: boom: a bug of ours (rerun with --debug for the traceback)"
    ]
    assert "Traceback" not in err


def test_debug_flag_prints_the_traceback(broken_plan: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--debug", "plan", EXAMPLE]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert "RuntimeError: boom: a bug of ours" in err
    assert _lines(err)[-1] == "perphedge: internal error: RuntimeError: boom: a bug of ours"


def test_debug_env_prints_the_traceback(
    broken_plan: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PERPHEDGE_DEBUG", "1")
    assert main(["plan", EXAMPLE]) == 1
    assert "Traceback (most recent call last):" in capsys.readouterr().err


def test_debug_does_not_leak_into_the_next_call(broken_plan: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--debug", "plan", EXAMPLE]) == 1
    capsys.readouterr()
    assert main(["plan", EXAMPLE]) == 1
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "exc", [KeyError("holdings"), TypeError("unsupported operand"), ZeroDivisionError("float division by zero")]
)
def test_any_unexpected_exception_is_exit_1(
    exc: Exception, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import perphedge.usecases.plan as uc

    monkeypatch.setattr(uc, "plan_from_file", _raise(exc))
    assert main(["plan", EXAMPLE]) == 1
    lines = _lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert lines[0].startswith(f"perphedge: internal error: {type(exc).__name__}: ")


def test_user_error_stays_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import perphedge.usecases.plan as uc

    monkeypatch.setattr(uc, "plan_from_file", _raise(DataError("no daily history of SOL\nin the store")))
    assert main(["plan", EXAMPLE]) == 2
    assert _lines(capsys.readouterr().err) == ["perphedge: error: no daily history of SOL; in the store"]
    assert main(["--debug", "plan", EXAMPLE]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and _lines(err)[-1] == "perphedge: error: no daily history of SOL; in the store"


def test_keyboard_interrupt_is_130(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import perphedge.usecases.plan as uc

    monkeypatch.setattr(uc, "plan_from_file", _raise(KeyboardInterrupt()))
    assert main(["plan", EXAMPLE]) == 130
    assert _lines(capsys.readouterr().err) == ["perphedge: interrupted"]


@pytest.mark.parametrize(
    "exc,expected",
    [
        (PermissionError(errno.EACCES, "Permission denied", "/data/out/result.json"), "/data/out/result.json"),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "plots"), "plots: Is a directory"),
        (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
    ],
)
def test_file_system_errors_are_the_users(
    exc: OSError, expected: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import perphedge.usecases.plan as uc

    monkeypatch.setattr(uc, "plan_from_file", _raise(exc))
    assert main(["plan", EXAMPLE]) == 2
    lines = _lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("perphedge: error: ") and expected in lines[0]


def test_os_error_without_errno_is_ours(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import perphedge.usecases.plan as uc

    monkeypatch.setattr(uc, "plan_from_file", _raise(OSError("cannot identify image file")))
    assert main(["plan", EXAMPLE]) == 1
    assert "internal error: OSError" in capsys.readouterr().err


def test_write_text_names_the_path_when_the_disk_is_full() -> None:
    from perphedge.cli.options import write_text
    from perphedge.errors import ConfigError

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    with pytest.raises(ConfigError, match=r"`--out`: cannot write /dev/full: No space left on device"):
        write_text("/dev/full", "x" * 100_000, "--out")


def test_help_version_and_bare_commands_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("perphedge ")
    for argv in ([], ["plan"], ["calc"], ["plan", "--help"], ["--help"], ["data"], ["stress"]):
        assert main(argv) == 0, argv
        out = capsys.readouterr()
        assert "Usage: perphedge" in out.out, argv
        assert out.err == "", argv
