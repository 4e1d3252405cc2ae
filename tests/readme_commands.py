"""The commands README.md prints, read as a user reads them, and what tests/integration/test_readme.py does with each.

The rules are stated in tests/integration/test_readme.py's docstring; this module implements them and reports every
block or command that breaks one (a ``problem``) instead of silently skipping it.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

MODES = ("run", "compose", "shell")
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console"}
INTERPRETERS = {"python", "python3", ".venv/bin/python"}
HYDRA_APPS = {"humanclap.train", "humanclap.evaluate", "humanclap.score"}
ELISION = "..."
MULTIRUN_FLAGS = {"-m", "--multirun"}
# Hydra flags that print instead of running (help, config, info): such a command runs as printed.
PRINT_FLAGS = {"--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i"}

FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)")
MARKER = re.compile(r"^<!--\s*readme:\s*([a-z, ]+?)\s*-->$")
CI_MARKER = re.compile(r"^<!--\s*ci:test-command\b.*-->$")
INLINE_SPAN = re.compile(r"(?<!`)`([^`]+)`(?!`)")
PLACEHOLDER = re.compile(r"<([\w-]+)>")  # checkpoints/<run>: the user writes their run's name


@dataclass(frozen=True)
class Command:
    """One command of the README. ``words`` are its shell words after the last ``&&`` (comments dropped)."""

    text: str  # as printed, continuation lines joined
    words: tuple[str, ...]
    mode: str  # run | compose | shell | help | ci | suite
    line: int  # README line where it starts
    inline: bool  # an inline code span (not a fenced block)
    block: int | None = None  # line of the block's opening fence

    @property
    def key(self) -> str:
        """The command with the interpreter written ``python``: how tests name it."""
        words = ("python", *self.words[1:]) if self.words[0] in INTERPRETERS else self.words
        return shlex.join(words)

    @property
    def module(self) -> str | None:
        """``humanclap.train`` for ``python -m humanclap.train ...`` (also ``torchrun ... -m``)."""
        if self.words[0] in HYDRA_APPS:
            return self.words[0]
        if self.words[0] in INTERPRETERS | {"torchrun"} and "-m" in self.words:
            return self.words[self.words.index("-m") + 1]
        return None

    @property
    def arguments(self) -> list[str]:
        """What follows the module (or script), as printed."""
        if self.words[0] in HYDRA_APPS:
            return list(self.words[1:])
        if self.module is not None:
            return list(self.words[self.words.index("-m") + 2 :])
        return list(self.words[2:])

    def run_argv(self, python: str) -> list[str]:
        """The command as run: ``python`` / ``python3`` / ``.venv/bin/python`` become ``python`` (this interpreter)."""
        return [python, "-m", self.module, *self.arguments]

    def compose_arguments(self) -> list[str]:
        """Hydra arguments that compose the job's config and print it, no run: ``-m`` dropped (Hydra refuses
        ``--cfg`` with ``--multirun``; each job composes in run mode), ``...`` elisions dropped, ``<run>``
        placeholders filled in as ``run`` (Hydra's grammar has no ``<``)."""
        kept = [
            PLACEHOLDER.sub(r"\1", word)
            for word in self.arguments
            if word != ELISION and word not in MULTIRUN_FLAGS
        ]
        return [*kept, "--cfg", "job", "--resolve"]

    @property
    def help_arguments(self) -> list[str]:
        """Mode ``help``: a Hydra command that only prints (``--help``, ``--cfg job``) as printed; any other
        program (another humanclap module, a benchmark script) with ``--help`` alone."""
        return self.arguments if self.module in HYDRA_APPS else ["--help"]

    def shell_help_argv(self) -> list[str]:
        """``hf download laion/x --local-dir y`` -> ``hf download --help``: the program and its subcommand."""
        subcommand = [w for w in self.words[1:2] if re.fullmatch(r"[a-z][a-z-]*", w)]
        return [self.words[0], *subcommand, "--help"]


@dataclass(frozen=True)
class Block:
    line: int  # line of the opening fence (1-based)
    language: str
    marker: str | None  # the comment on the line right before the fence
    lines: tuple[str, ...]


def read(path: Path = README) -> tuple[list[Block], list[Command], list[str]]:
    """Every fenced block, every command (blocks and inline spans) and every rule a block or span breaks."""
    text = path.read_text()
    blocks, prose = _split_blocks(text.splitlines())
    commands, problems = [], []
    for block in blocks:
        found, trouble = _block_commands(block)
        commands += found
        problems += [f"README line {block.line}: {message}" for message in trouble]
    found, trouble = _inline_commands(prose)
    return blocks, commands + found, problems + trouble


def _split_blocks(lines: list[str]) -> tuple[list[Block], list[str]]:
    """Fenced blocks, and the README with their lines blanked (line numbers kept) for the inline spans."""
    blocks, prose, index = [], list(lines), 0
    while index < len(lines):
        opening = FENCE.match(lines[index].strip())
        if not opening:
            index += 1
            continue
        fence, language = opening.groups()
        end = index + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        marker = lines[index - 1].strip() if index > 0 else ""
        blocks.append(
            Block(
                index + 1,
                language,
                marker if marker.startswith("<!--") else None,
                tuple(lines[index + 1 : end]),
            )
        )
        for blank in range(index, min(end + 1, len(lines))):
            prose[blank] = ""
        index = end + 1
    return blocks, prose


def _logical_lines(block: Block) -> list[tuple[int, str]]:
    """Lines of a block with ``\\``-newline continuations joined, blank and comment-only lines dropped."""
    joined, start, parts = [], None, []
    for offset, raw in enumerate(block.lines):
        if start is None:
            start = block.line + 1 + offset
        if raw.rstrip().endswith("\\"):
            parts.append(raw.rstrip()[:-1])
            continue
        parts.append(raw)
        line = " ".join(part.strip() for part in parts)
        if line and not line.startswith("#"):
            joined.append((start, line))
        start, parts = None, []
    return joined


def _words(line: str) -> tuple[list[tuple[str, ...]], str | None]:
    """Shell words of a ``&&`` chain, split into its commands; or the reason it cannot be read."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError as error:
        return [], f"cannot be read as shell words ({error}): {line}"
    if any(word in {"|", "||", ";", ">", "<", "&"} for word in words):
        return [], f"pipes, redirections and ';' are not part of the rules: {line}"
    chain, current = [], []
    for word in words:
        if word == "&&":
            chain.append(tuple(current))
            current = []
        else:
            current.append(word)
    chain.append(tuple(current))
    if any(not part for part in chain):
        return [], f"empty command in: {line}"
    return chain, None


def _is_setup(words: tuple[str, ...]) -> bool:
    """What CI's fresh install already did: ``python3 -m venv .venv``, ``.venv/bin/pip install ...``."""
    venv = words[0] in INTERPRETERS and words[1:3] == ("-m", "venv")
    pip = Path(words[0]).name == "pip" and words[1:2] == ("install",)
    return venv or pip


def _block_commands(block: Block) -> tuple[list[Command], list[str]]:
    if block.language not in SHELL_LANGUAGES:
        return [], []
    lines = _logical_lines(block)
    if block.marker is None:
        return [], [
            "a fenced block without a marker comment on the line before it "
            "(<!-- readme:run -->, <!-- readme:compose --> or <!-- readme:shell -->)"
        ]
    if CI_MARKER.match(block.marker):
        if len(lines) != 1:
            return [], [
                "the ci:test-command block must hold exactly one line (.ci/run runs the first)"
            ]
        return [
            Command(
                lines[0][1], tuple(shlex.split(lines[0][1])), "ci", lines[0][0], False, block.line
            )
        ], []
    marker = MARKER.match(block.marker)
    if not marker:
        return [], [f"unknown marker {block.marker!r}"]
    modes = [mode.strip() for mode in marker.group(1).split(",")]
    problems = [
        f"unknown mode {mode!r} in {block.marker!r} (modes: {', '.join(MODES)})"
        for mode in modes
        if mode not in MODES
    ]
    if problems:
        return [], problems
    if len(modes) not in (1, len(lines)):
        return [], [
            f"{block.marker!r} gives {len(modes)} modes for {len(lines)} commands: one mode, or one per "
            f"command in order"
        ]
    commands = []
    for (line, text), mode in zip(lines, modes * len(lines) if len(modes) == 1 else modes):
        command, problem = _classify(text, line, mode, inline=False, block=block.line)
        if problem:
            problems.append(problem)
        else:
            commands.append(command)
    return commands, problems


def _classify(
    text: str, line: int, mode: str, inline: bool, block: int | None = None
) -> tuple[Command | None, str]:
    """The command a line holds under ``mode``, or why the line breaks the rules."""
    where = f"README line {line}" if inline else ""
    chain, problem = _words(text)
    if problem:
        return None, f"{where} {problem}".strip()
    *setup, words = chain
    if setup and not all(_is_setup(part) for part in setup):
        return (
            None,
            f"{where} only setup (python3 -m venv, pip install) may come before '&&': {text}".strip(),
        )
    command = Command(text, words, mode, line, inline, block)
    python = words[0] in INTERPRETERS or words[0] in HYDRA_APPS
    if mode == "shell":
        if python or words[0] == "torchrun":
            return None, f"a Python command in a shell block (mark it run or compose): {text}"
        return command, ""
    if not python and words[0] != "torchrun":
        return (
            None,
            f"{where} not a humanclap command, so its mode is shell (readme:shell): {text}".strip(),
        )
    if command.module in HYDRA_APPS:
        if PRINT_FLAGS & set(words):
            return Command(text, words, "help", line, inline, block), ""
        if words[0] == "torchrun" and mode == "run":
            return None, f"{where} torchrun commands are composed, not run: {text}".strip()
        if mode == "run" and (ELISION in words or any(PLACEHOLDER.search(word) for word in words)):
            return (
                None,
                f"{where} '...' or a <placeholder>: the command cannot run as printed: {text}".strip(),
            )
        return command, ""
    if command.module == "pytest":
        return Command(text, words, "suite", line, inline, block), ""
    if (command.module or "").startswith("humanclap.") or (
        command.module is None and words[1:2] and words[1].endswith(".py")
    ):
        return Command(text, words, "help", line, inline, block), ""
    return (
        None,
        f"{where} a Python command of no known kind (humanclap.train/evaluate, another humanclap "
        f"module, a script, pytest): {text}".strip(),
    )


def _inline_commands(prose: list[str]) -> tuple[list[Command], list[str]]:
    """Code spans in the prose that are commands: they start with an interpreter (``python``, ``python3``,
    ``.venv/bin/python``) or ``torchrun``, or are ``humanclap.train`` / ``humanclap.evaluate``, with arguments.
    humanclap's Hydra commands are composed (test_readme.py's INLINE_RUN runs those needing no data)."""
    text = "\n".join(prose)
    starts = [0]
    for line in prose:
        starts.append(starts[-1] + len(line) + 1)
    commands, problems = [], []
    for match in INLINE_SPAN.finditer(text):
        span = " ".join(match.group(1).split())
        first, *rest = span.split(" ", 1)
        if not (rest and first in INTERPRETERS | {"torchrun"} | HYDRA_APPS):
            continue
        line = next(number for number, start in enumerate(starts) if start > match.start())
        command, problem = _classify(span, line, "compose", inline=True)
        if problem:
            problems.append(problem)
        else:
            commands.append(command)
    return commands, problems
