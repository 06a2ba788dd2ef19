"""Generate the Python stubs from ``protos/`` — the single source of truth for the wire format.

``generate()`` writes ``*_pb2.py``, ``*_pb2.pyi`` and ``*_pb2_grpc.py`` next to the package
path the ``.proto`` file sits under (``protos/ptxplain/v1/result.proto`` ->
``ptxplain/v1/result_pb2.py``); ``drift()`` regenerates into a temporary folder and lists the
files that differ from the committed ones.
"""

from __future__ import annotations

import filecmp
import tempfile
from pathlib import Path

from ptxplain.errors import ConfigError

__all__ = ["REPO_ROOT", "drift", "generate", "proto_files"]

REPO_ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = REPO_ROOT / "protos"


def proto_files(root: Path = PROTO_ROOT) -> list[Path]:
    return sorted(root.rglob("*.proto"))


def _outputs(proto: Path, root: Path) -> list[Path]:
    stem = proto.relative_to(root).with_suffix("")
    return [
        stem.with_name(stem.name + suffix) for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
    ]


def generate(out: Path = REPO_ROOT, root: Path = PROTO_ROOT) -> list[Path]:
    """Run protoc (from grpcio-tools) over every .proto file; return the files written."""
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    protos = proto_files(root)
    args = ["protoc", f"-I{root}", f"-I{include}", f"--python_out={out}", f"--pyi_out={out}"]
    args += [f"--grpc_python_out={out}", *map(str, protos)]
    if protoc.main(args) != 0:
        raise ConfigError(f"protoc failed on {', '.join(p.name for p in protos)}")
    written = [out / rel for proto in protos for rel in _outputs(proto, root)]
    for folder in {path.parent for path in written}:
        (folder / "__init__.py").touch()
    return written


def drift(root: Path = PROTO_ROOT) -> list[str]:
    """Generated files that are missing or differ from what protoc makes now."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp), root)
        stale = []
        for path in fresh:
            rel = path.relative_to(tmp)
            committed = REPO_ROOT / rel
            if not committed.exists() or not filecmp.cmp(path, committed, shallow=False):
                stale.append(str(rel))
        return stale
