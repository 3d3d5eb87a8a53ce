"""The README's walk-through, run for real: its shell blocks under "A walk through" and
"Retries, order, and the past", copied out of README.md and run in order by bash against a
fresh ``cairn serve``, as a new user would paste them. What keeps the README true.

A block is split into steps at its blank lines. In a step, comment lines before the first
command say what it does; comment lines after it show what the step prints, line by line,
``…`` standing for anything (an id, a time). Every step must print exactly that, and a step
that shows nothing must print only JSON answers that are not problems."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from tests.api.conftest import Server

README: Final = Path(__file__).parents[2] / "README.md"
SECTIONS: Final = ("A walk through", "Retries, order, and the past")
ADDRESS: Final = "localhost:8080"
"""Where the README's commands go; the test points them at its own server instead."""
SEPARATOR: Final = "\x1e"  # ASCII record separator: printed between steps, never by a step


@dataclass
class Step:
    about: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return " / ".join(self.about) or self.commands[0]


def shell_blocks(markdown: str, section: str) -> list[str]:
    """The ```sh blocks of one ``## section`` of the README."""
    found = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", markdown, re.M | re.S)
    assert found, f"README.md has no section '## {section}'"
    blocks = re.findall(r"^```sh\n(.*?)^```", found[1], re.M | re.S)
    assert blocks, f"README.md's '## {section}' has no ```sh block"
    return blocks


def steps(block: str) -> list[Step]:
    found: list[Step] = []
    for chunk in re.split(r"\n\s*\n", block.strip()):
        step = Step()
        for line in chunk.splitlines():
            if line.startswith("#"):
                (step.shown if step.commands else step.about).append(line[1:].strip())
            else:
                step.commands.append(line)
        assert step.commands, f"a step of the README with no command: {chunk!r}"
        found.append(step)
    return found


def shows(pattern: str, line: str) -> bool:
    """Whether ``line`` is what the README shows, ``…`` standing for anything."""
    return re.fullmatch(".*".join(map(re.escape, pattern.split("…"))), line) is not None


def is_problem(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("status"), int) and "title" in value


def json_values(text: str) -> list[Any]:
    """Every JSON value in ``text``, one after another (curl prints no newline after one)."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while (at := len(text) - len(text[at:].lstrip())) < len(text):
        value, at = decoder.raw_decode(text, at)
        values.append(value)
    return values


def run(all_steps: list[Step], server: Server, tmp_path: Path) -> list[str]:
    """Run every step in one bash, in order (a step's variables are the next one's); return
    what each printed, one string per step."""
    script = ["set -euo pipefail", "trap echo DEBUG"]  # a newline before each command's output
    for step in all_steps:
        script += step.commands
        script.append(f"printf '{SEPARATOR}'")
    host = urlsplit(server.url).netloc
    done = subprocess.run(
        ["bash", "-c", "\n".join(script).replace(ADDRESS, host)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    printed = done.stdout.split(SEPARATOR)
    ran = len(printed) - 1
    assert done.returncode == 0, (
        f"the README's step '{all_steps[min(ran, len(all_steps) - 1)].name}' failed"
        f" (exit {done.returncode}):\n{done.stderr}"
    )
    return printed[:ran]


def test_the_readme_walk_through_runs_as_written(server: Server, tmp_path: Path) -> None:
    markdown = README.read_text(encoding="utf-8")
    blocks = [block for section in SECTIONS for block in shell_blocks(markdown, section)]
    all_steps = [step for block in blocks for step in steps(block)]
    for step in all_steps:
        for line in step.commands:
            for address in re.findall(r"(?:localhost|127\.0\.0\.1):\d+", line):
                assert address == ADDRESS, f"step '{step.name}' talks to {address}, not {ADDRESS}"

    printed = run(all_steps, server, tmp_path)

    answers: dict[str, list[str]] = {}
    for step, output in zip(all_steps, printed, strict=True):
        lines = [line for line in output.splitlines() if line.strip()]
        answers[step.name] = lines
        for value in json_values(output):
            assert not is_problem(value), f"step '{step.name}' was refused: {value}"
        if step.shown:
            assert len(lines) == len(step.shown), (
                f"step '{step.name}' printed {lines}; the README shows {step.shown}"
            )
            for line, pattern in zip(lines, step.shown, strict=True):
                assert shows(pattern, line), (
                    f"step '{step.name}' printed\n  {line}\nwhere the README shows\n  {pattern}"
                )

    # What the README says in words, beyond the shapes it shows.
    (retry,) = [lines for name, lines in answers.items() if "retry" in name]
    first, replayed = retry
    assert first == replayed, "a retry with the same Idempotency-Key must get the first answer"
    (read,) = [lines for name, lines in answers.items() if "read your write" in name]
    message = json.loads(read[0])
    assert message["status"] == "acked"
    assert [event["type"] for event in message["history"]] == [
        "message.published",
        "message.leased",
        "message.acked",
    ]
