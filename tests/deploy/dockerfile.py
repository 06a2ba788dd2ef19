"""A small Dockerfile reader for the tests: instructions (continuations joined), per stage."""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

__all__ = ["Instruction", "Stage", "copy_sources", "exec_form", "read_stages", "runtime_stage"]


@dataclasses.dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


@dataclasses.dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction] = dataclasses.field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


def _logical_lines(text: str) -> list[str]:
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    return lines


def read_stages(path: Path) -> list[Stage]:
    """Every build stage with its instructions (ARGs before the first FROM are dropped)."""
    stages: list[Stage] = []
    for line in _logical_lines(path.read_text()):
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else ""
            stages.append(Stage(words[0], name))
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, args))
    return stages


def exec_form(args: str) -> list[str]:
    """A JSON-array (exec form) instruction argument as a list; shell form is an error."""
    text = args.strip()
    if not text.startswith("["):
        raise ValueError(f"not in exec form: {args!r}")
    return list(json.loads(text))


def copy_sources(args: str) -> list[str]:
    """The context paths a COPY reads (none when it copies from a stage or a named context)."""
    words = shlex.split(args)
    if any(w.startswith("--from=") for w in words):
        return []
    paths = [w for w in words if not w.startswith("--")]
    return paths[:-1]


def runtime_stage(path: Path) -> Stage:
    """The stage that runs: the one with the ENTRYPOINT (later stages only add files)."""
    stages = [s for s in read_stages(path) if s.all("ENTRYPOINT")]
    if len(stages) != 1:
        raise ValueError(f"{path}: expected one stage with an ENTRYPOINT, found {len(stages)}")
    return stages[0]
