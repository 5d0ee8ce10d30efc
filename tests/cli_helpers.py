"""Running the `genlab` command in-process and reading how it ended, for every CLI test."""

from __future__ import annotations

from typer.testing import CliRunner

from genlab.cli import app


def invoke(*args):
    return CliRunner().invoke(app, [str(arg) for arg in args])


def succeeded(result) -> str:
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result.output


def user_error(result) -> str:
    """The one `error:` line of a command that failed cleanly: exit status 1, no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), f"crashed with {result.exception!r}"
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def clean_refusal(result) -> None:
    """Refused without a traceback: genlab's one `error:` line (status 1) or Click's usage error (status 2)."""
    assert not (result.exception and not isinstance(result.exception, SystemExit)), \
        f"crashed: {result.exception!r}\n{result.output}"
    assert result.exit_code in (1, 2), f"accepted (status {result.exit_code}):\n{result.output}"
    if result.exit_code == 1:
        user_error(result)
    assert "Traceback" not in result.output
