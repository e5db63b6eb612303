"""Every ``rfcx-kit …`` command in README.md and docs/ parses against the real CLI.

Each command (a code-block line or an inline code span, continuation lines joined, ``&&`` chains split, shell
redirections and comments dropped) goes through click's own parser for the group and the sub-command: an
unknown option, an option without its value, an extra argument, a choice or number outside its option's domain,
a missing required option, or a ``--set`` key the config does not have fails the test, naming the file and line.
``...`` in a command elides the rest of it (required options are then not checked).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from rfcx_kit.app.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PROGRAM = re.compile(r"(?:^|[\s`(])(?:\S*/)?rfcx-kit(?=\s|`|$)")
SPAN = re.compile(r"`([^`\n]*\brfcx-kit\b[^`\n]*)`")
PLACEHOLDER = re.compile(r"[A-Z]|\$\w+|\$\{\w+\}|\$\(\(.*\)\)")  # a value the text names: D, T, $SEED
SHELL_BREAKS = {"&&", "||", ";", "|", "&"}
CHECKED_TYPES = (click.Choice, click.IntRange, click.FloatRange, click.types.IntParamType,
                 click.types.FloatParamType)


def commands(path: Path) -> list[tuple[int, str, bool]]:
    """``(line number, command text, whole)`` of every rfcx-kit command in a markdown file; ``whole``: a line of
    a code block (an inline span in prose may name a command by part of it: its required options are not
    checked)."""
    out: list[tuple[int, str, bool]] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    in_block = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            in_block = not in_block
            i += 1
            continue
        indented = line.startswith("    ") and not line.lstrip().startswith(("-", "*", "|"))
        if in_block or indented:
            start, text = i + 1, line
            while text.rstrip().endswith("\\") and i + 1 < len(lines):  # a continued command
                i += 1
                text = text.rstrip()[:-1] + " " + lines[i].strip()
            words = text.strip()
            first = words.split()[0] if words.split() else ""
            # a command line: it starts with the program (after a prompt or VAR=value settings)
            head = re.sub(r"^(\$\s+)?((\w+=\S+|for .*?;\s*do)\s+)*", "", words)
            if head.startswith(("rfcx-kit ", ".venv/bin/rfcx-kit ")) or head == "rfcx-kit" or first == "rfcx-kit":
                out.append((start, words, True))
        else:
            out += [(i + 1, m.group(1), False) for m in SPAN.finditer(line) if PROGRAM.search(m.group(1))]
        i += 1
    return out


def invocations(text: str) -> list[list[str]]:
    """The argument lists after ``rfcx-kit`` in a shell line (chains split, redirections dropped)."""
    text = re.sub(r"(?<=\s)\d?>&\d|(?<=\s)\d>>?\s*\S+", " ", text)  # 2>&1, 2> err.log
    lexer = shlex.shlex(text, posix=True, punctuation_chars="&|;<>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    words = list(lexer)
    runs: list[list[str]] = [[]]
    skip = False
    for word in words:
        if skip:
            skip = False
            continue
        if word in SHELL_BREAKS:
            runs.append([])
        elif set(word) <= set("<>&") or re.fullmatch(r"\d?>>?|\d>&\d", word):
            skip = not word.endswith("&1")  # the redirection's target follows
        else:
            runs[-1].append(word)
    out = []
    for run in runs:
        at = [k for k, w in enumerate(run) if w == "rfcx-kit" or w.endswith("/rfcx-kit")]
        if at:
            out.append(run[at[0] + 1:])
    return out


def given(value: object) -> list[str]:
    """The words the parser gave an option or argument (click >= 8.2 marks an unset one with a sentinel)."""
    if isinstance(value, str):
        return [value]
    return [w for w in value if isinstance(w, str)] if isinstance(value, (list, tuple)) else []


def check(args: list[str], whole: bool = True) -> str | None:
    """None when ``rfcx-kit ARGS`` parses against the real CLI, else why not (``whole``: check required
    options too)."""
    # "..." elides the rest; a bare mention (`rfcx-kit stage1`) names a command without its options
    elided = not whole or "..." in args or "…" in args or not any(a.startswith("-") for a in args)
    args = [a for a in args if a not in ("...", "…")]
    command: click.Command = main
    name = "rfcx-kit"
    try:
        while True:
            ctx = click.Context(command, info_name=name, resilient_parsing=False)
            parser = command.make_parser(ctx)
            opts, rest, _ = parser.parse_args(list(args))
            if "help" in opts:
                return None
            for param in command.params:
                value = opts.get(param.name)
                if value is None or type(value).__name__ == "Sentinel":  # click >= 8.2 marks unset values
                    if param.required and not elided:
                        return f"{name}: missing {param.get_error_hint(ctx)}"
                    continue
                if isinstance(param.type, CHECKED_TYPES):
                    for item in value if isinstance(value, (list, tuple)) else [value]:
                        if not PLACEHOLDER.fullmatch(str(item)):
                            param.type.convert(item, param, ctx)
                if param.name == "overrides":
                    check_overrides(value)
            if isinstance(command, click.Group):
                if not rest:
                    return None if elided or command is not main else "no sub-command"
                sub = command.get_command(ctx, rest[0])
                if sub is None:
                    return f"no such command {rest[0]!r}"
                command, name, args = sub, f"{name} {rest[0]}", rest[1:]
                continue
            if rest:
                return f"{name}: unexpected extra argument(s) {' '.join(rest)}"
            more = given(opts.get("more_checkpoints"))
            if more and not given(opts.get("checkpoints")):  # predict/export: words after --checkpoint only
                return f"{name}: unexpected extra argument(s) {' '.join(map(str, more))}"
            return None
    except click.UsageError as exc:
        return f"{name}: {exc.format_message()}"
    except click.BadParameter as exc:
        return f"{name}: {exc.format_message()}"


def check_overrides(values: list[str] | tuple[str, ...]) -> None:
    from rfcx_kit.core.config import Config, apply_overrides, parse_override
    from rfcx_kit.core.errors import ConfigError

    for text in values if isinstance(values, (list, tuple)) else [values]:
        key, _, value = text.partition("=")
        if PLACEHOLDER.fullmatch(value):
            text = key + "=1"
        try:
            apply_overrides(Config(), parse_override(text))
        except ConfigError as exc:
            raise click.BadParameter(str(exc)) from None


ALL = [(path, line, text, whole) for path in DOCS for line, text, whole in commands(path)]


def test_the_docs_have_commands_to_check() -> None:
    readme = [a for p, _, a, _ in ALL if p.name == "README.md"]
    assert len(readme) >= 15, readme
    assert any("predict --checkpoint" in t for t in readme)


@pytest.mark.parametrize(("path", "line", "text", "whole"), ALL, ids=[f"{p.name}:{n}" for p, n, _, _ in ALL])
def test_command_parses(path: Path, line: int, text: str, whole: bool) -> None:
    for args in invocations(text):
        why = check(args, whole)
        assert why is None, f"{path.relative_to(ROOT)}:{line}: `{text}`: {why}"


@pytest.mark.parametrize(("text", "why"), [
    ("rfcx-kit stage1 --data d --run r --pipelne demo", "No such option '--pipelne'"),
    ("rfcx-kit relabel --run r --cycle 3", "No such option '--cycle'"),
    ("rfcx-kit stage1 --data d --run r extra", "unexpected extra argument"),
    ("rfcx-kit predict --run r --audio a --out o --format ravn", "'ravn' is not one of"),
    ("rfcx-kit predict --run r --audio a --out o stray.pt", "unexpected extra argument"),
    ("rfcx-kit relabel --run r --cycles 0", "0 is not in the range"),
    ("rfcx-kit stage1 --data d --run r --set train.epoch=3", "unknown config key 'train.epoch'"),
    ("rfcx-kit stage1 --run r", "missing '--data'"),
    ("rfcx-kit stag1 --run r", "no such command 'stag1'"),
    ("rfcx-kit stage1 --data d --run r --pipeline", "--pipeline"),
])
def test_a_misspelled_command_fails(text: str, why: str) -> None:
    got = [check(args) for args in invocations(text)]
    assert got and got[0] is not None and why in got[0], got


@pytest.mark.parametrize("text", [
    "rfcx-kit predict --checkpoint runs/r/cycle1/fold0/best.pt runs/r/cycle1/fold1/best.pt --audio a --out o",
    "HF_HUB_OFFLINE=1 rfcx-kit stage1 --data d --run r  # offline",
    "rfcx-kit relabel --run R && rfcx-kit report --run R > log.txt 2>&1",
    "rfcx-kit stage1 ... --pipeline demo",
])
def test_a_correct_command_passes(text: str) -> None:
    assert [check(args) for args in invocations(text)] == [None] * len(invocations(text))
