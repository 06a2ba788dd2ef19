"""Docker's .dockerignore rules, for the tests: which context paths reach the build.

Patterns as Docker reads them: matched against the slash-separated path inside the context,
``*`` and ``?`` within one path segment, ``**`` across any number of segments, a pattern that
matches a folder also covers what is inside it, ``!`` re-includes, and the last matching
pattern wins.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["DockerIgnore"]


def _regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + "(?:/.*)?$")


class DockerIgnore:
    def __init__(self, path: Path) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            include = line.startswith("!")
            pattern = line[1:] if include else line
            self.rules.append((include, _regex(pattern.strip().strip("/"))))

    def sent(self, relative: str) -> bool:
        """Whether the context path ``relative`` (slash-separated) reaches the build."""
        sent = True
        for include, regex in self.rules:
            if regex.match(relative.strip("/")):
                sent = include
        return sent
