"""Click's own errors (a mistyped command, a value of the wrong type, a missing argument) are
one line on stderr naming the command's help, exit 2, as the commands' own errors are."""

from __future__ import annotations

import pytest

from tests.worker.cli_process import cli_environment, run_cli

USAGE_ERRORS = [
    (
        ("order", "submit", "AAPL", "--qty", "abc"),
        "error: Invalid value for '--qty': Input should be a valid number, unable to parse"
        " string as a number (see 'alchemiser order submit --help')",
    ),
    (
        ("dlq", "lst"),
        "error: No such command 'lst'. Did you mean 'list'? (see 'alchemiser dlq --help')",
    ),
    (
        ("order", "submit"),
        "error: Missing argument 'symbol'. (see 'alchemiser order submit --help')",
    ),
    (
        ("dlq", "list", "--nope"),
        "error: No such option: --nope (see 'alchemiser dlq list --help')",
    ),
]


@pytest.mark.parametrize(("args", "line"), USAGE_ERRORS)
def test_a_usage_error_is_one_line_on_stderr_with_exit_2(args: tuple[str, ...], line: str) -> None:
    result = run_cli(*args, env=cli_environment())
    assert (result.returncode, result.stdout, result.stderr) == (2, "", line + "\n")


def test_a_group_without_a_command_prints_its_help_and_exits_2() -> None:
    """As Click does: the help on stdout, nothing on stderr."""
    result = run_cli("dlq", env=cli_environment())
    assert result.returncode == 2
    assert "Usage: alchemiser dlq [OPTIONS] COMMAND [ARGS]..." in result.stdout
    assert "replay" in result.stdout
    assert result.stderr == ""


def test_help_still_exits_0() -> None:
    result = run_cli("health", "--help", env=cli_environment())
    assert (result.returncode, result.stderr) == (0, "")
    assert "Usage: alchemiser health" in result.stdout
