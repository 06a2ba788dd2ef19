"""Run a built image's processes in the image's own filesystem, as its own user.

buildah here: ``buildah from`` makes a working container of the image, and ``buildah run
--isolation chroot --network host`` runs a command in it with the image's USER, environment
and working directory (what ``docker run`` would do, minus a read-only root and dropped
capabilities, which chroot isolation cannot give). Each stack gets its own network namespace
(``ip netns``), so the images listen on their own ports (8080, 50051, ...) as in Compose, on
a loopback no other process of this machine shares; the test's client runs in it too.
With a Docker engine, ``docker run --network host`` / ``docker exec`` instead (no namespace).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from services.containers.engine import Engine

__all__ = ["ImageConfig", "ImageProcess", "Mount", "NetNamespace", "RunSpec", "image_config"]


@dataclasses.dataclass(frozen=True)
class ImageConfig:
    """What the image says about running it."""

    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    env: Mapping[str, str]
    user: str
    workdir: str
    healthcheck: tuple[str, ...]


def image_config(engine: Engine, reference: str) -> ImageConfig:
    if engine.kind == "docker":
        args = [engine.binary, "image", "inspect", reference]
        config = json.loads(_check(args))[0]["Config"]
    else:
        args = [engine.binary, "inspect", "--type", "image", reference]
        config = json.loads(_check(args))["Docker"]["config"]
    test = (config.get("Healthcheck") or {}).get("Test") or []
    return ImageConfig(
        entrypoint=tuple(config.get("Entrypoint") or ()),
        cmd=tuple(config.get("Cmd") or ()),
        env=dict(e.split("=", 1) for e in config.get("Env") or ()),
        user=str(config.get("User") or ""),
        workdir=str(config.get("WorkingDir") or ""),
        healthcheck=tuple(test[1:]) if test[:1] == ["CMD"] else (),
    )


def _check(args: Sequence[str], timeout_s: float = 120) -> str:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=timeout_s, check=True
    ).stdout


@dataclasses.dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool = True

    def option(self) -> str:
        return f"{self.source}:{self.target}" + (":ro" if self.read_only else "")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One container: its image, full command, extra environment and mounts."""

    image: str
    command: tuple[str, ...]
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()
    # /etc/hosts entries: the names other services answer to (in one namespace: loopback)
    hosts: tuple[str, ...] = ()
    healthcheck: tuple[str, ...] = ()


class NetNamespace:
    """A fresh network namespace with only loopback; ``wrap`` runs a command inside it."""

    def __init__(self, prefix: str = "ptxplain-img") -> None:
        self.name = f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        _check(["ip", "netns", "add", self.name])
        _check(["ip", "netns", "exec", self.name, "ip", "link", "set", "lo", "up"])

    def wrap(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)


class ImageProcess:
    """One container's main process in the background; ``exec`` runs more in the same one."""

    def __init__(self, engine: Engine, spec: RunSpec, netns: NetNamespace | None, log: Path):
        self.engine, self.spec, self.netns, self.log = engine, spec, netns, log
        self.name = f"ptxplain-test-{uuid.uuid4().hex[:8]}"
        self.process: subprocess.Popen[bytes] | None = None

    def _wrap(self, argv: list[str]) -> list[str]:
        return self.netns.wrap(argv) if self.netns is not None else argv

    def _options(self) -> list[str]:
        options = [f"--volume={m.option()}" for m in self.spec.mounts]
        return options + [f"--env={k}={v}" for k, v in self.spec.env.items()]

    def start(self) -> ImageProcess:
        binary = self.engine.binary
        hosts = [f"--add-host={name}:127.0.0.1" for name in self.spec.hosts]
        if self.engine.kind == "docker":
            argv = [binary, "run", "--rm", "--name", self.name, "--network", "host", *hosts]
            argv += [*self._options(), "--entrypoint", self.spec.command[0], self.spec.image]
            argv += list(self.spec.command[1:])
        else:
            _check([binary, "from", "--pull-never", "--name", self.name, *hosts, self.spec.image])
            self._make_mount_points()
            argv = [binary, "run", "--isolation", "chroot", "--network", "host"]
            argv += [*self._options(), self.name, "--", *self.spec.command]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                self._wrap(argv), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        if self.engine.kind == "buildah":
            self._wait_started()
        return self

    def _make_mount_points(self) -> None:
        """Mount the container's root for its whole life (so that an ``exec`` ending does not
        unmount it under the main process) and create each mount's target in it (buildah 1.28
        makes only the last part of a path)."""
        root = Path(_check([self.engine.binary, "mount", self.name]).strip())
        for mount in self.spec.mounts:
            target = root / mount.target.lstrip("/")
            if mount.source.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch(exist_ok=True)

    def _wait_started(self, timeout_s: float = 120) -> None:
        """Until the image's command runs (buildah has set the container up)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.alive() and not self.processes():
            time.sleep(0.2)

    def exec(self, argv: Sequence[str], timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        """``argv`` in this container (its filesystem, user, environment and mounts)."""
        binary = self.engine.binary
        if self.engine.kind == "docker":
            command = [binary, "exec", self.name, *argv]
        else:
            command = [binary, "run", "--isolation", "chroot", "--network", "host"]
            command += [*self._options(), self.name, "--", *argv]
        return subprocess.run(
            self._wrap(command), capture_output=True, text=True, timeout=timeout_s, check=False
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def processes(self) -> dict[int, tuple[str, int]]:
        """``{pid: (command line, real uid)}`` of the container's processes (not buildah's)."""
        if self.process is None:
            return {}
        table = _process_table()
        found, frontier = {}, [self.process.pid]
        while frontier:
            parent = frontier.pop()
            for pid, (ppid, cmdline, uid) in table.items():
                if ppid == parent:
                    frontier.append(pid)
                    if not cmdline.startswith(("buildah", "ip ")):
                        found[pid] = (cmdline, uid)
        return found

    def stop(self, timeout_s: float = 60) -> list[int]:
        """SIGTERM to the container's first process, as ``docker stop`` (its init, tini,
        passes it on); SIGKILL to what is left after ``timeout_s``. The pids that were left."""
        left: list[int] = []
        if self.process is not None and self.process.poll() is None:
            inside = self.processes()
            init = min(inside, default=None)
            if self.engine.kind == "docker":
                subprocess.run(
                    [self.engine.binary, "stop", "-t", str(int(timeout_s)), self.name],
                    capture_output=True,
                    check=False,
                )
            elif init is not None:
                os.kill(init, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and (_alive(inside) or self.process.poll() is None):
                time.sleep(0.2)
            left = _alive(inside)
            for pid in left:
                os.kill(pid, signal.SIGKILL)
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
        if self.engine.kind == "buildah":
            subprocess.run(
                [self.engine.binary, "umount", self.name], capture_output=True, check=False
            )
            subprocess.run([self.engine.binary, "rm", self.name], capture_output=True, check=False)
        return left


def _process_table() -> dict[int, tuple[int, str, int]]:
    """``{pid: (parent pid, command line, real uid)}`` from /proc (zombies left out)."""
    table = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            status = (entry / "status").read_text()
        except OSError:
            continue
        if fields[0] == "Z":
            continue
        uid = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("Uid:"))
        table[int(entry.name)] = (int(fields[1]), cmdline.strip(), uid)
    return table


def _alive(pids: Mapping[int, object] | Sequence[int]) -> list[int]:
    table = _process_table()
    return [pid for pid in pids if pid in table]
