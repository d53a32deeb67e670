"""The READMEs hold: every link and every file they name resolves in the repository, and every command they show
parses with the flags the programs really have (the benches also run: tests/test_benches.py)."""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
import warnings
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

READMES = [REPO_ROOT / "README.md", REPO_ROOT / "bench" / "README.md", REPO_ROOT / "deploy" / "README.md"]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FILE_NAME = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w-]+\.md)\b")  # documents a reader goes looking for
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


class Parsed(Exception):
    """Raised instead of running a program once its arguments parsed."""


def mentioned_files(readme: Path) -> set[str]:
    """Relative link targets, and the documents (name.md) the prose names, outside code (files in `code` may be
    outputs or examples)."""
    text = FENCE.sub("", readme.read_text())
    targets = {t.split("#")[0] for t in LINK.findall(text) if not re.match(r"[a-z]+:|#", t)}
    names = {m for m in FILE_NAME.findall(re.sub(r"`[^`]*`", "", text)) if not m.startswith(("http", "."))}
    return {t for t in targets | names if t}


@pytest.mark.parametrize("readme", READMES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_file_a_readme_names_exists(readme):
    missing = sorted(name for name in mentioned_files(readme)
                     if not ((readme.parent / name).exists() or (REPO_ROOT / name).exists()))
    assert missing == [], f"{readme.name} names files that are not in the repository: {missing}"


def documented_commands(readme: Path) -> list[list[str]]:
    """The `incident-copilot ...` and `python -m bench....` commands of the README's shell blocks, as argv."""
    commands = []
    for lang, body in FENCE.findall(readme.read_text()):
        if lang not in ("sh", "bash", "console", ""):
            continue
        for line in body.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            try:
                argv = shlex.split(line, comments=True)
            except ValueError:
                continue
            while argv and "=" in argv[0] and not argv[0].startswith("-"):  # VAR=value prefixes
                argv.pop(0)
            if argv and Path(argv[0]).name == "incident-copilot":
                commands.append(argv)
            elif argv[:2] == ["python", "-m"] and argv[2].startswith("bench."):
                commands.append(argv[2:])
    return commands


def parse_cli(args: list[str]) -> None:
    """Parse `incident-copilot ARGS` down to its command with click, converting every value, without running it."""
    import click

    from cli import cli

    command, name, parent = cli, "incident-copilot", None
    while True:
        ctx = command.make_context(name, list(args), parent=parent)
        if not isinstance(command, click.Group):
            return
        with warnings.catch_warnings():  # click 8.2 deprecates protected_args for 9.0, which folds them into args
            warnings.simplefilter("ignore", DeprecationWarning)
            rest = [*ctx.protected_args, *ctx.args]
        if not rest:
            raise click.UsageError(f"{name}: no command given", ctx)
        name, sub, args = command.resolve_command(ctx, rest)
        command, parent = sub, ctx


def parse_only(argv: list[str]) -> None:
    """Parse `argv` with the program's own parser, then stop before it runs anything."""
    if argv[0] == "incident-copilot":
        parse_cli(argv[1:])
        return
    original = argparse.ArgumentParser.parse_args

    def parse(self, args=None, namespace=None):
        raise Parsed(original(self, args, namespace))

    argparse.ArgumentParser.parse_args = parse
    try:
        importlib.import_module(argv[0]).main(argv[1:])
    except Parsed:
        return
    finally:
        argparse.ArgumentParser.parse_args = original
    raise AssertionError(f"{argv} ran without parsing its arguments")


@pytest.mark.parametrize("readme", READMES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_documented_command_parses(readme, capsys):
    commands = documented_commands(readme)
    failed = []
    import click

    for argv in commands:
        try:
            parse_only(argv)
        except click.ClickException as exc:
            failed.append(f"{shlex.join(argv)}: {exc.format_message()}")
        except SystemExit as exc:  # argparse's answer to bad arguments
            failed.append(f"{shlex.join(argv)}: {capsys.readouterr().err.strip().splitlines()[-1:]} ({exc.code})")
    assert failed == [], "documented commands that do not parse:\n" + "\n".join(failed)


def test_the_readme_documents_commands_at_all():
    assert len(documented_commands(REPO_ROOT / "README.md")) >= 5
    assert len(documented_commands(REPO_ROOT / "bench" / "README.md")) >= 5


def test_the_readmes_settings_table_is_the_configurations():
    from service.config_check import settings_markdown

    text = (REPO_ROOT / "README.md").read_text()
    start = text.index("-->\n", text.index("<!-- settings table")) + 4
    table = text[start:text.index("\n<!-- end of settings table -->")]
    assert table == settings_markdown(), "regenerate the README's settings table with settings_markdown()"
