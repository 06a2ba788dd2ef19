"""The floor plan holds: imports run one way (loadtest -> harness -> services -> handlers -> the
core in ptxplain/; only the CLI may import every layer), no module imports itself back through
others, and the gateway's code reaches no torch, numpy or imaging library."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("ptxplain", "handlers", "services", "harness", "loadtest")
GENERATED = ("ptxplain.v1", "ptxplain.torchserve", "ptxplain.oip")
# Lower layers first; a module may import its own layer and those below.
LAYERS = ("ptxplain", "handlers", "services", "harness", "loadtest", "ptxplain.cli")
HEAVY = ("torch", "torchvision", "timm", "numpy", "PIL", "cv2", "pydicom", "pytorch_grad_cam")


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            name = _module_name(path)
            if not name.startswith(GENERATED):
                found[name] = path
    return found


def _resolve(name: str) -> str | None:
    """The project module an import names (a package's ``__init__`` for a package)."""
    while name and name not in _modules():
        name = name.rpartition(".")[0]
    return name or None


@functools.cache
def _imports(module: str) -> tuple[frozenset[str], frozenset[str]]:
    """(project modules, third-party top-level names) imported anywhere in ``module``."""
    tree = ast.parse(_modules()[module].read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    own = {r for n in names if (r := _resolve(n)) and r != module}
    third = {n.split(".")[0] for n in names if n.split(".")[0] not in PACKAGES}
    return frozenset(own), frozenset(third)


def _layer(module: str) -> int:
    return max(
        i for i, layer in enumerate(LAYERS) if module == layer or module.startswith(layer + ".")
    )


def test_imports_run_one_way() -> None:
    upward = [
        f"{module} -> {target}"
        for module in sorted(_modules())
        for target in sorted(_imports(module)[0])
        if _layer(target) > _layer(module)
    ]
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_no_import_loops() -> None:
    """No module reaches itself through other modules (a package's ``__init__`` re-exporting its
    modules is no loop: its modules never import the package back)."""
    loops = []
    for start in sorted(_modules()):
        stack, seen = [(start, (start,))], set()
        while stack:
            module, path = stack.pop()
            for target in _imports(module)[0]:
                if target == start and len(path) > 1:
                    loops.append(" -> ".join((*path, start)))
                elif target not in seen:
                    seen.add(target)
                    stack.append((target, (*path, target)))
    assert not loops, "import loops:\n" + "\n".join(sorted(set(loops))[:10])


def _reachable(module: str) -> set[str]:
    seen, todo = {module}, [module]
    while todo:
        for target in _imports(todo.pop())[0]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


@pytest.mark.parametrize(
    "module", sorted(m for m in _modules() if m.startswith("services.gateway"))
)
def test_the_gateway_reaches_no_torch_or_imaging_library(module: str) -> None:
    heavy = {
        f"{reached} imports {name}"
        for reached in _reachable(module)
        for name in _imports(reached)[1] & set(HEAVY)
    }
    assert not heavy, f"{module} reaches: " + "; ".join(sorted(heavy))


def test_every_package_lists_its_public_names() -> None:
    missing = [
        str(path.relative_to(REPO))
        for package in PACKAGES
        for path in (REPO / package).rglob("__init__.py")
        if not _module_name(path).startswith(GENERATED) and "__all__" not in path.read_text()
    ]
    assert not missing, f"__init__.py without __all__: {missing}"
