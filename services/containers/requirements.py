"""Print pinned requirement lines from pyproject.toml's ``[project] dependencies``.

Runs in an image's build stage before the sources are copied (stdlib only), so that the
dependency layers stay cached while the code changes::

    python requirements.py pyproject.toml --only torch torchvision > torch.txt
    python requirements.py pyproject.toml > all.txt
    python requirements.py pyproject.toml --only grpcio protobuf pyyaml > gateway.txt

The versions live in pyproject.toml alone; a name given to ``--only`` that pyproject.toml does
not list is an error (exit 2), so an image cannot silently drop a dependency.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

__all__ = ["canonical_name", "main", "project_requirements", "select"]

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical_name(name: str) -> str:
    """PEP 503 normalisation: ``PyYAML`` and ``pyyaml``, ``grpcio_tools`` and ``grpcio-tools``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(line: str) -> str:
    match = _NAME.match(line)
    if match is None:
        raise ValueError(f"cannot read a distribution name from requirement {line!r}")
    return canonical_name(match.group(1))


def project_requirements(pyproject: Path) -> dict[str, str]:
    """``{canonical name: requirement line}`` for the project's runtime dependencies."""
    with pyproject.open("rb") as handle:
        project = tomllib.load(handle).get("project", {})
    return {_requirement_name(line): line for line in project.get("dependencies", [])}


def select(requirements: dict[str, str], only: Sequence[str] | None) -> list[str]:
    """The lines for ``only`` (all when None); a name pyproject does not list is a ValueError."""
    if only is None:
        return list(requirements.values())
    wanted = [canonical_name(name) for name in only]
    missing = [name for name in wanted if name not in requirements]
    if missing:
        raise ValueError(f"not in pyproject.toml's dependencies: {', '.join(missing)}")
    return [requirements[name] for name in wanted]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject", type=Path, help="path to pyproject.toml")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="these distributions only")
    args = parser.parse_args(argv)
    try:
        lines = select(project_requirements(args.pyproject), args.only)
    except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
        print(f"error: {args.pyproject}: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
