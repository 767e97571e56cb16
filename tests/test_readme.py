"""The README's commands against the real command line, and the repository paths it names.

Every ``fashion-gluon COMMAND ...`` in a fenced shell block, in an inline code span or in the
first cell of a table row must name a command of :func:`fashion_gluon.cli.parser.build_parser`
and use only options that command accepts. The README may describe options that are being
built: those are listed in NEEDED and marked where they are used with an HTML comment
``<!-- needs: COMMAND --option -->`` (before the fenced block, or in the same paragraph or
table row). When an option lands, this test fails until it is removed from NEEDED and its
``needs:`` comments are removed from the README.
"""
import argparse
import glob
import re
from pathlib import Path

import pytest

from fashion_gluon.cli.parser import build_parser

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

#: (command, option) pairs the README describes before the parser has them; the integrator empties this.
NEEDED: set[tuple[str, str]] = set()

SHELL_LANGS = {"", "bash", "sh", "shell", "console"}
FENCE = re.compile(r"^```(\S*)\s*$")
NEEDS = re.compile(r"<!--\s*needs:(.*?)-->", re.S)
NEEDS_OPTION = re.compile(r"^(\S+)\s+(--[a-z][\w-]*)$")
CODE_SPAN = re.compile(r"`([^`]+)`")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
INVOCATION = re.compile(r"(?:fashion-gluon|python -m fashion_gluon)\s+(.*)")
REPO_PATH = re.compile(r"(?<![\w/.-])((?:configs|scripts|notebooks|docs|tests|fashion_gluon)/[\w*./-]*"
                       r"\.(?:yaml|sh|ipynb|md|py|json))")


def parse_needs(text: str) -> tuple[set[tuple[str, str]], list[str]]:
    """(the (command, option) pairs, the other notes) of the ``needs:`` comments in ``text``."""
    options, notes = set(), []
    for comment in NEEDS.findall(text):
        for item in (part.strip() for part in comment.split(";")):
            match = NEEDS_OPTION.match(item)
            if match:
                options.add((match.group(1), match.group(2)))
            elif item:
                notes.append(item)
    return options, notes


def paragraphs(lines: list[str]) -> list[tuple[int, str]]:
    """(first line number, text) of each blank-line separated paragraph outside fenced blocks."""
    out, current, start, fenced = [], [], 0, False
    for number, line in enumerate(lines, 1):
        if FENCE.match(line.strip()):
            fenced = not fenced
            if current:
                out.append((start, "\n".join(current)))
            current = []
            continue
        if fenced:
            continue
        if line.strip():
            if not current:
                start = number
            current.append(line)
        elif current:
            out.append((start, "\n".join(current)))
            current = []
    if current:
        out.append((start, "\n".join(current)))
    return out


def uses() -> list[dict]:
    """Every command line of the README: ``text`` (one command, continuations joined), ``line``
    and ``needs`` (the (command, option) pairs its ``needs:`` comments name)."""
    lines = README.read_text(encoding="utf-8").splitlines()
    found = []
    # fenced shell blocks; the needs: comments stand on the lines just before the fence
    number = 0
    while number < len(lines):
        match = FENCE.match(lines[number].strip())
        if not match:
            number += 1
            continue
        lang, start = match.group(1).lower(), number
        end = start + 1
        while end < len(lines) and not FENCE.match(lines[end].strip()):
            end += 1
        if lang in SHELL_LANGS:
            before, back = [], start - 1
            while back >= 0 and (not lines[back].strip() or NEEDS.search(lines[back])):
                before.append(lines[back])
                back -= 1
            needs = parse_needs("\n".join(before))[0]
            joined, first = "", None
            for offset, line in enumerate(lines[start + 1:end], start + 2):
                code = re.sub(r"(^|\s)#.*$", "", line).rstrip()
                first = first or offset
                joined += " " + code
                if code.endswith("\\"):
                    joined = joined[:-1]
                    continue
                if INVOCATION.search(joined):
                    found.append({"text": " ".join(joined.split()), "line": first, "needs": needs})
                joined, first = "", None
        number = end + 1
    # inline code spans (needs: comments in the same paragraph) and the first cells of a
    # command table (header "command"; needs: comments in the same row)
    for start, text in paragraphs(lines):
        rows = text.splitlines()
        table = all(row.lstrip().startswith("|") for row in rows)
        command_table = table and rows[0].split("|")[1].strip() == "command"
        for offset, row in enumerate(rows if table else [text]):
            needs = parse_needs(row if table else text)[0]
            cells = row.replace("\\|", "\u2502").split("|")
            for index, cell in enumerate(cells if table else [row.replace("\\|", "\u2502")]):
                for span in CODE_SPAN.findall(cell):
                    span = " ".join(span.replace("\u2502", "|").split())
                    if span.startswith(("fashion-gluon ", "python -m fashion_gluon ")):
                        found.append({"text": span, "line": start + offset, "needs": needs})
                    elif command_table and index == 1 and offset >= 2:
                        found.append({"text": "fashion-gluon " + span, "line": start + offset, "needs": needs})
    return found


@pytest.fixture(scope="module")
def commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def invocations(text: str) -> list[tuple[str, list[str]]]:
    """(command, options) of each fashion-gluon command in ``text``; ``launch ... -- CMD ...`` gives two."""
    rest = INVOCATION.search(text).group(1)
    out = []
    for part in re.split(r"\s--\s", " " + rest + " "):
        words = part.split()
        if not words:
            continue
        # a table's "train ... / evaluate ..." alternatives are handled as separate spans
        name = words[0].strip("[]()")
        out.append((name, OPTION.findall(" ".join(words[1:]).replace("|", " ").replace("[", " "))))
    return out


def test_readme_names_commands():
    found = uses()
    assert len(found) > 30, "the README's commands were not found; did the parsing rules change?"
    names = {invocations(u["text"])[0][0] for u in found}
    assert {"train", "predict", "evaluate", "export", "quantize", "weights"} <= names


def test_every_command_and_option_exists(commands):
    problems, used_needed = [], set()
    for use in uses():
        for name, options in invocations(use["text"]):
            if name.isupper():
                continue  # a placeholder: `fashion-gluon COMMAND --help`
            if name not in commands:
                problems.append(f"README line {use['line']}: no command {name!r} in `{use['text']}`")
                continue
            accepted = commands[name]._option_string_actions
            for option in options:
                if option in accepted:
                    continue
                if (name, option) not in NEEDED:
                    problems.append(f"README line {use['line']}: `{name}` has no option {option} "
                                    f"(in `{use['text']}`)")
                elif (name, option) not in use["needs"]:
                    problems.append(f"README line {use['line']}: {name} {option} is not built yet; mark it "
                                    f"with <!-- needs: {name} {option} --> (in `{use['text']}`)")
                else:
                    used_needed.add((name, option))
    assert not problems, "\n".join(problems)
    unused = NEEDED - used_needed
    assert not unused, f"NEEDED lists options the README does not use: {sorted(unused)}"


def test_needed_options_are_still_missing(commands):
    """A NEEDED option the parser now accepts must leave NEEDED and the README's needs: comments;
    while any remain, this test reports them as an expected failure."""
    landed = sorted((name, option) for name, option in NEEDED
                    if name in commands and option in commands[name]._option_string_actions)
    assert not landed, (f"these options exist now: {landed}; remove them from NEEDED in {Path(__file__).name} "
                        f"and their <!-- needs: ... --> comments from the README")
    marked, notes = parse_needs(README.read_text(encoding="utf-8"))
    stray = sorted(marked - NEEDED)
    assert not stray, f"the README's needs: comments name options missing from NEEDED: {stray}"
    if NEEDED or notes:
        pytest.xfail("README describes what is not built yet: "
                     + "; ".join([f"{n} {o}" for n, o in sorted(NEEDED)] + notes))


def test_repository_paths_exist():
    text = README.read_text(encoding="utf-8")
    paths = sorted(set(REPO_PATH.findall(text)))
    assert any(p.startswith("configs/") for p in paths) and any(p.startswith("scripts/") for p in paths)
    missing = [p for p in paths if not (glob.glob(str(REPO / p)) if "*" in p else (REPO / p).exists())]
    assert not missing, f"the README names paths that do not exist: {missing}"


def test_make_targets_exist():
    targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.M))
    used = set(re.findall(r"^make (\w+)", README.read_text(encoding="utf-8"), re.M))
    assert used and used <= targets, f"make targets the Makefile lacks: {sorted(used - targets)}"
