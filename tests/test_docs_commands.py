"""Every ``echomeasure`` command the documentation shows names a real sub-command and real options.

The README, ``docs/``, ``benchmarks/`` and the data folders' READMEs show commands in fenced shell
blocks (``.venv/bin/echomeasure bench --accuracy --cases 40``) and in inline code in the command
table and the prose (```echomeasure export [--db URL] [--format csv\\|json]```, or a sub-command
alone: ```deid --no-text-search```).  Each is checked against the parser the console script
really uses (:func:`echomeasure.cli.build_parser`), so documenting a flag that does not exist, or
renaming a flag without updating the docs, fails here.  Placeholders (``PATH``, ``[--host]``,
``csv|json``) are allowed; only sub-commands, their actions (``weights list``) and option names are
checked, not values.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from echomeasure.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent

#: fenced blocks whose language marks shell commands (and unlabelled blocks, which hold commands too)
SHELL_LANGS = {"", "bash", "sh", "shell", "console", "zsh", "text"}

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)[ \t]*(?P<lang>[\w+-]*)[^\n]*$")
INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
#: ``echomeasure`` as a command word (at the start, after a space or ``bin/``) followed by a space;
#: not a URL's database name (``host/echomeasure``) nor a module (``echomeasure.cli``)
COMMAND_WORD = re.compile(r"(?:^|(?<=[\s(])|(?<=bin/))echomeasure(?=\s)")
LONG_OPTION = re.compile(r"^--[A-Za-z][\w-]*")
SHORT_OPTION = re.compile(r"^-[A-Za-z]$")


def doc_files(root: Path = ROOT) -> list[Path]:
    """The user-facing documentation: README.md, docs/**, benchmarks/*.md, the data folders' READMEs."""
    files = [root / "README.md"]
    files += sorted((root / "docs").rglob("*.md"))
    files += sorted((root / "benchmarks").glob("*.md"))
    files += [root / d / "README.md" for d in ("db", "weights", "examples")]
    return [f for f in files if f.is_file()]


@dataclass(frozen=True)
class DocCommand:
    """One documented command: where it is and its words after ``echomeasure``."""

    where: str
    text: str
    words: tuple[str, ...]


def _words(text: str) -> tuple[str, ...]:
    """Whitespace-separated words of a command, markdown escapes and brackets undone."""
    text = text.replace("\\|", "|")
    try:
        words = shlex.split(text, comments=False, posix=True)
    except ValueError:  # an unbalanced quote in prose: split on blanks
        words = text.split()
    return tuple(w.strip("[](){},;") for w in words if w.strip("[](){},;"))


def _shell_lines(block: list[str]) -> list[str]:
    """A fenced block's lines with backslash continuations joined and comments dropped."""
    out: list[str] = []
    pending = ""
    for line in block:
        line = re.sub(r"(^|\s)#.*$", "", line).rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append(pending + line)
        pending = ""
    if pending:
        out.append(pending)
    return out


def _after_command_word(line: str) -> list[str]:
    """The text after each ``echomeasure`` command word of a line, up to a shell separator."""
    found = []
    for m in COMMAND_WORD.finditer(line):
        rest = line[m.end():]
        rest = re.split(r"\s(?:&&|\|\||;|\||>|2>|<)\s|\s[>|]\s?", rest)[0]
        found.append(rest)
    return found


def commands_in(path: Path, text: str | None = None, subcommands: frozenset[str] = frozenset()) -> list[DocCommand]:
    """Every ``echomeasure ...`` command in a markdown file: fenced shell blocks and inline code.

    Inline code that starts with a known sub-command followed by an option (``deid
    --no-text-search``) counts as a command too (the README's prose names commands that way)."""
    text = path.read_text(encoding="utf-8") if text is None else text
    name = str(path.relative_to(ROOT)) if ROOT in path.parents else path.name
    found: list[DocCommand] = []
    lines = text.splitlines()
    in_block: str | None = None
    block_lang = ""
    block: list[tuple[int, str]] = []
    prose: list[tuple[int, str]] = []
    for no, line in enumerate(lines, 1):
        m = FENCE.match(line)
        if in_block is None and m:
            in_block, block_lang, block = m.group("fence"), m.group("lang").lower(), []
            continue
        if in_block is not None:
            if line.strip().startswith(in_block[0] * len(in_block)) and line.strip().strip(in_block[0]) == "":
                if block_lang in SHELL_LANGS:
                    start = block[0][0] if block else no
                    for i, joined in enumerate(_shell_lines([b for _, b in block])):
                        for rest in _after_command_word(joined):
                            found.append(DocCommand(f"{name}:{start + i}", "echomeasure" + rest, _words(rest)))
                in_block = None
            else:
                block.append((no, line))
            continue
        prose.append((no, line))
    for no, line in prose:
        for span in INLINE.findall(line):
            for rest in _after_command_word(span):
                found.append(DocCommand(f"{name}:{no}", "echomeasure" + rest, _words(rest)))
            first = span.split(maxsplit=1)
            if (len(first) == 2 and not COMMAND_WORD.search(span) and first[0].replace("\\|", "|").split("|")[0]
                    in subcommands and re.search(r"(^|\s)\[?-{1,2}[A-Za-z]", first[1])):
                found.append(DocCommand(f"{name}:{no}", "echomeasure " + span, _words(span)))
    return found


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return set(parser._option_string_actions)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def check(cmd: DocCommand, parser: argparse.ArgumentParser) -> list[str]:
    """What is wrong with one documented command (empty: every name in it exists)."""
    problems: list[str] = []
    words = list(cmd.words)
    top_options = _options(parser)
    while words and words[0].startswith("-"):
        opt = words.pop(0).split("=", 1)[0]
        if opt not in top_options:
            problems.append(f"echomeasure has no option {opt}")
    if not words:
        return problems
    # the parsers this command may reach: ``train|evaluate --dataset ...`` reaches both
    targets = [parser]
    for level in range(2):
        subs = {name: sp for t in targets for name, sp in _subparsers(t).items()}
        if not subs:
            break
        if not words or words[0].startswith("-"):
            if level:
                problems.append(f"{' '.join(cmd.words[:1])}: no action given (one of {', '.join(sorted(subs))})")
            break
        names = [n for n in words.pop(0).split("|") if n]
        missing = [n for n in names if n not in subs]
        if missing and level == 0 and len(names) == 1 and not any(c.isupper() for c in names[0]):
            problems.append(f"unknown sub-command {names[0]!r}")
            return problems
        if missing and level == 1:
            bad = [n for n in missing if not n.isupper()]  # ACTION placeholders are upper case
            if bad:
                problems.append(f"{cmd.words[0]}: unknown action {bad[0]!r} (known: {', '.join(sorted(subs))})")
                return problems
        targets = [subs[n] for n in names if n in subs] or targets
        if level == 0 and missing:
            return problems
    for word in words:
        opt = word.split("=", 1)[0]
        m = LONG_OPTION.match(opt)
        if m:
            opt = m.group(0)
        elif not SHORT_OPTION.match(opt):
            continue
        for target in targets:
            if opt not in _options(target):
                problems.append(f"{target.prog}: no option {opt}")
    return problems


def all_commands() -> list[DocCommand]:
    subcommands = frozenset(_subparsers(build_parser()))
    return [c for f in doc_files() for c in commands_in(f, subcommands=subcommands)]


def test_docs_show_commands() -> None:
    """The scan finds the README's command table and the fenced examples (it is not vacuous)."""
    commands = all_commands()
    shown = {c.words[0] for c in commands if c.words}
    assert len(commands) > 40
    documented = set(_subparsers(build_parser()))
    assert documented <= shown, f"sub-commands the docs never show: {sorted(documented - shown)}"


def test_documented_commands_exist_in_the_parser() -> None:
    parser = build_parser()
    problems = [f"{c.where}: `{c.text.strip()}`: {p}" for c in all_commands() for p in check(c, parser)]
    assert not problems, "documented commands the CLI does not have:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ("```bash\n.venv/bin/echomeasure bench --acuracy --cases 4\n```\n", "no option --acuracy"),
        ("| `echomeasure export [--db URL] [--fromat csv\\|json]` | x |\n", "no option --fromat"),
        ("```sh\necho hi && echomeasure measrue x.dcm\n```\n", "unknown sub-command 'measrue'"),
        ("Use `echomeasure weights purge NAME`.\n", "unknown action 'purge'"),
        ("`train\\|evaluate --dataset camus PATH --split test`\n", "echomeasure train: no option --split"),
        ("```\necho x \\\n  | echomeasure ingest --no-propse DIR  # comment --fine\n```\n", "no option --no-propse"),
        ("run `deid --secrets S` first\n", "no option --secrets"),
    ],
)
def test_checker_catches_a_wrong_command(doc: str, expected: str, tmp_path: Path) -> None:
    """The checker would fail on a documented flag or sub-command that does not exist."""
    parser = build_parser()
    path = tmp_path / "doc.md"
    path.write_text(doc, encoding="utf-8")
    commands = commands_in(path, subcommands=frozenset(_subparsers(parser)))
    problems = [p for c in commands for p in check(c, parser)]
    assert any(expected in p for p in problems), (commands, problems)


def test_checker_accepts_placeholders(tmp_path: Path) -> None:
    doc = (
        "```bash\n.venv/bin/echomeasure train --model plax-linear --steps 2000 --seed 0  # --not-checked\n```\n"
        "| `echomeasure train\\|evaluate --dataset camus\\|echonet-dynamic\\|masks PATH` |\n"
        "`echomeasure demo [--host] [--port] [--db URL] [--auth USER:PASS]`, `echomeasure weights list [--json]`,\n"
        "`echomeasure.propose.volumes` and `pip install 'echomeasure[ray]'` are no commands; "
        "`echomeasure -v measure PATH -q`.\n"
        "```\nECHOMEASURE_DB=postgresql+psycopg://app@host/echomeasure echomeasure demo\n```\n"
    )
    path = tmp_path / "doc.md"
    path.write_text(doc, encoding="utf-8")
    parser = build_parser()
    commands = commands_in(path, subcommands=frozenset(_subparsers(parser)))
    assert len(commands) == 6, commands
    assert [p for c in commands for p in check(c, parser)] == []


#: a module run with ``python -m`` and its words, over backslash continuations of a fenced block
MODULE_COMMAND = re.compile(r"python -m (echomeasure(?:\.\w+)+)((?:(?:[ \t]+|[ \t]*\\\n[ \t]*)[^\s#`|;&<>\\]+)*)")


def module_commands_in_text(text: str) -> list[tuple[int, str, list[str]]]:
    """``python -m echomeasure.X --opt ...`` in markdown text: (line, module, options)."""
    found = []
    for m in MODULE_COMMAND.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        opts = [w.split("=", 1)[0] for w in m.group(2).replace("\\\n", " ").split()
                if LONG_OPTION.match(w) or SHORT_OPTION.match(w.strip("[]"))]
        found.append((line, m.group(1), [o.strip("[]") for o in opts]))
    return found


def module_commands(path: Path) -> list[tuple[str, str, list[str]]]:
    """``python -m echomeasure.X --opt ...`` in a markdown file: (where, module, options)."""
    name = path.relative_to(ROOT)
    return [(f"{name}:{line}", module, opts)
            for line, module, opts in module_commands_in_text(path.read_text(encoding="utf-8"))]


@pytest.mark.slow
def test_documented_python_m_commands_take_their_options() -> None:
    """``python -m echomeasure.training.X --flag`` in the docs: each module's ``--help`` lists the flag
    (each module is started once, which imports torch: about 5-10 s apiece)."""
    wanted: dict[str, dict[str, str]] = {}
    for f in doc_files():
        for where, module, opts in module_commands(f):
            for opt in opts:
                wanted.setdefault(module, {}).setdefault(opt, where)
    assert "echomeasure.training.experiment" in wanted
    env = {**os.environ, "COLUMNS": "10000"}
    problems = []
    for module, where_of in sorted(wanted.items()):
        done = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True,
                              env=env, cwd=ROOT, timeout=120)
        assert done.returncode == 0, f"python -m {module} --help: {done.stderr[-500:]}"
        known = set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", done.stdout))
        problems += [f"{where}: python -m {module} has no option {opt}" for opt, where in where_of.items()
                     if opt not in known]
    assert not problems, "\n".join(problems)


def test_module_commands_are_read_over_continuations() -> None:
    """The slow check above sees every option of a ``python -m`` command, continuation lines included."""
    text = ("```bash\nnice -n 5 python -m echomeasure.training.view_train --version 1.3 \\\n"
            "    --gain-augment --bogus-flag  # --comment\n```\n")
    found = [(m, o) for _, m, o in module_commands_in_text(text)]
    assert found == [("echomeasure.training.view_train", ["--version", "--gain-augment", "--bogus-flag"])]
