"""Run an image's command on this machine, seeing only what the image would contain.

There is no Docker engine here, so :func:`sandbox` rebuilds the image's ``/app`` from the
Dockerfile's COPY lines into a folder, and writes a ``sitecustomize`` that (1) drops this
virtualenv's editable-install finder, so the project imports from that folder only, and (2)
refuses to import any top-level module that is neither the standard library, nor a copied
project package, nor provided by the image's requirement list and its dependencies (resolved
from this virtualenv's installed metadata). A process started with :meth:`Sandbox.env` fails
with ImportError where the image would.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from services.containers.requirements import canonical_name
from tests.deploy.dockerfile import read_stages
from tests.deploy.support import REPO

__all__ = ["Sandbox", "distribution_closure", "sandbox"]

_SITECUSTOMIZE = """
import importlib.abc
import importlib.machinery
import sys

ALLOWED = {allowed!r}
OUTSIDE = {outside!r}
sys.meta_path[:] = [
    f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")
]


class _ImageOnly(importlib.abc.MetaPathFinder):
    # Third-party and project modules the image lacks are missing; the stdlib is not.
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in ALLOWED or name != top:
            return None
        spec = importlib.machinery.PathFinder.find_spec(top)
        places = [spec.origin or "", *(spec.submodule_search_locations or [])] if spec else []
        if any(place.startswith(OUTSIDE) for place in places if place):
            raise ModuleNotFoundError(f"{{name}} is not in the image", name=name)
        return None


sys.meta_path.insert(0, _ImageOnly())
"""


def distribution_closure(names: Iterable[str]) -> set[str]:
    """The distributions ``names`` pull in (runtime requirements, no extras), canonical names."""
    seen: set[str] = set()
    stack = [canonical_name(n) for n in names]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                stack.append(canonical_name(requirement.name))
    return seen


def _top_level_modules(distributions: set[str]) -> set[str]:
    return {
        top
        for top, owners in metadata.packages_distributions().items()
        if any(canonical_name(owner) in distributions for owner in owners)
    }


def _site_packages() -> tuple[str, ...]:
    """Where this virtualenv's third-party modules live (what the image may lack)."""
    import site

    return tuple(site.getsitepackages())


def _copy(source: Path, dest: Path) -> None:
    if source.is_dir():
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(source, dest, dirs_exist_ok=True, ignore=ignore)
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest)


def _materialize(dockerfile: Path, app: Path) -> set[str]:
    """Copy what the build stage COPYs into /app; the top-level packages copied."""
    packages = set()
    for stage in read_stages(dockerfile):
        for args in stage.all("COPY"):
            words = [w for w in args.split() if not w.startswith("--")]
            sources, dest = words[:-1], words[-1]
            if "--from=" in args or not dest.startswith("/app/"):
                continue
            target = app / dest.removeprefix("/app/")
            for source in sources:
                into_dir = dest.endswith("/") or len(sources) > 1
                _copy(REPO / source, target / Path(source).name if into_dir else target)
                packages.add(Path(dest.removeprefix("/app/")).parts[0])
    return packages


def _requirement_names(dockerfile: Path) -> list[str]:
    text = dockerfile.read_text().replace("\\\n", " ")
    found = re.findall(r"requirements\.py pyproject\.toml --only ([^>]+)>", text)
    return [name for names in found for name in names.split()]


@dataclasses.dataclass(frozen=True)
class Sandbox:
    app: Path
    site: Path
    allowed: frozenset[str]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["PYTHONPATH"] = os.pathsep.join([str(self.site), str(self.app)])
        env["PYTHONNOUSERSITE"] = "1"
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env


def sandbox(dockerfile: Path, root: Path) -> Sandbox:
    """The image's /app under ``root``/app and a sitecustomize limiting imports to the image."""
    app, site = root / "app", root / "site"
    packages = _materialize(dockerfile, app)
    allowed = packages | _top_level_modules(distribution_closure(_requirement_names(dockerfile)))
    site.mkdir(parents=True, exist_ok=True)
    outside = (*_site_packages(), str(REPO))
    (site / "sitecustomize.py").write_text(
        _SITECUSTOMIZE.format(allowed=sorted(allowed), outside=outside)
    )
    return Sandbox(app, site, frozenset(allowed))
