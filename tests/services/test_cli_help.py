"""Help texts of the steep commands, rendered 80 columns wide as a terminal shows them."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from services.cli import app
from services.settings import Settings

runner = CliRunner()
WIDTH = 80


def command_paths() -> list[tuple[str, ...]]:
    """Return the argument path of every command and group below ``steep``."""
    paths: list[tuple[str, ...]] = []

    def walk(command: object, path: tuple[str, ...]) -> None:
        paths.append(path)
        list_commands = getattr(command, "list_commands", None)
        if list_commands is None:
            return
        for name in list_commands(None):
            walk(command.get_command(None, name), (*path, name))  # type: ignore[attr-defined]

    walk(typer.main.get_command(app), ())
    return paths[1:]


def render_help(path: tuple[str, ...]) -> list[str]:
    result = runner.invoke(app, [*path, "--help"], terminal_width=WIDTH, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return [line.strip() for line in result.output.splitlines()]


def exit_code_lines(lines: list[str]) -> list[str]:
    """Return the lines under "Exit codes:", up to the next blank line."""
    start = lines.index("Exit codes:") + 1
    end = lines.index("", start)
    return lines[start:end]


HELP = {path: render_help(path) for path in command_paths()}
DOCUMENTED = [path for path, lines in HELP.items() if "Exit codes" in "\n".join(lines)]
REMOTE = [path for path, lines in HELP.items() if "service could not be reached" in " ".join(lines)]


@pytest.mark.parametrize("path", DOCUMENTED, ids=" ".join)
def test_help_lists_one_exit_code_per_line(path: tuple[str, ...]) -> None:
    """Each exit code starts its own line, and no code's text wraps onto the next line."""
    codes = exit_code_lines(HELP[path])

    assert codes, f"steep {' '.join(path)} --help has no exit codes under 'Exit codes:'"
    for line in codes:
        assert re.fullmatch(r"\d \S.*", line), line


GROUPS = {path[:-1] for path in HELP if len(path) > 1}
LEAVES = [path for path in HELP if path not in GROUPS]


@pytest.mark.parametrize("path", LEAVES, ids=" ".join)
def test_command_help_has_exit_codes(path: tuple[str, ...]) -> None:
    """Every command that runs something documents its exit codes, one per line."""
    lines = HELP[path]

    assert "Exit codes:" in lines, f"steep {' '.join(path)} --help has no 'Exit codes:' section"
    assert exit_code_lines(lines)


@pytest.mark.parametrize("path", REMOTE, ids=" ".join)
def test_remote_help_exit_2_covers_api_key(path: tuple[str, ...]) -> None:
    """A command that calls the service documents that a missing or rejected key exits 2."""
    codes = exit_code_lines(HELP[path])

    (line,) = [line for line in codes if line.startswith("2 ")]

    assert line.endswith("no valid API key was sent"), line


def test_keys_revoke_help_names_key_cache() -> None:
    """The revoke help states that a key stops working within the key cache lifetime."""
    default = Settings.model_fields["key_cache_seconds"].default

    text = " ".join(HELP[("keys", "revoke")])

    assert "from now on" not in text
    assert "A revoked key stops working within key_cache_seconds" in text
    assert f"(STEEP_KEY_CACHE_SECONDS, default {default:g} s)" in text
