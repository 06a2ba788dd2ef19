"""A container's HEALTHCHECK: GET a URL, exit 0 on a 2xx answer, else 1 (stdlib only).

    python -m services.containers.healthcheck http://127.0.0.1:8080/ping \\
        --key-file /home/model-server/run/key_file.json
    python -m services.containers.healthcheck https://127.0.0.1:8000/healthz --insecure

With ``--key-file`` (TorchServe's key_file.json), the probe sends its inference key as a bearer
token when the file exists: TorchServe with token authorization on answers /ping only with it;
with authorization off there is no key file and no header. ``--token-env NAME`` sends the token
held in that environment variable instead (a gateway that guards its health routes).
``--insecure`` skips certificate checks for a server that only has a self-signed certificate
for its public name (the probe talks to 127.0.0.1). On failure one line on stderr says why.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["bearer_token", "main", "probe"]


def bearer_token(
    key_file: Path | None, token_env: str | None, env: Mapping[str, str]
) -> str | None:
    """The token to send: the key file's inference key, else the named variable's value."""
    if key_file is not None and key_file.exists():
        keys = json.loads(key_file.read_text())
        return str(keys["inference"]["key"])
    if token_env:
        return env.get(token_env) or None
    return None


def _one_line(body: bytes) -> str:
    return " ".join(body.decode(errors="replace").split())


def probe(url: str, token: str | None, timeout_s: float, insecure: bool) -> tuple[bool, str]:
    """(healthy, what was seen): healthy means an HTTP 2xx answer within ``timeout_s``."""
    request = urllib.request.Request(url, method="GET")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    context = ssl._create_unverified_context() if insecure else None
    try:
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as answer:
            return 200 <= answer.status < 300, f"{answer.status} {_one_line(answer.read(200))}"
    except urllib.error.HTTPError as exc:
        return False, f"{exc.code} {_one_line(exc.read(200))}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"no answer: {exc}"


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--key-file", type=Path, help="TorchServe's key_file.json, if present")
    parser.add_argument("--token-env", help="environment variable holding a bearer token")
    parser.add_argument("--timeout", type=float, default=4.0, help="seconds (default 4)")
    parser.add_argument("--insecure", action="store_true", help="skip TLS certificate checks")
    args = parser.parse_args(argv)
    try:
        token = bearer_token(args.key_file, args.token_env, os.environ if env is None else env)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"unhealthy: cannot read key file {args.key_file}: {exc!r}", file=sys.stderr)
        return 1
    healthy, seen = probe(args.url, token, args.timeout, args.insecure)
    if not healthy:
        print(f"unhealthy: GET {args.url}: {seen}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
