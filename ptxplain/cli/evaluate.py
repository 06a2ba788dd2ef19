"""Evaluate every served model on the test split: replay it through the gateway, then write
metrics.json, per_image.csv and report.html into --out.

  ptxplain evaluate --data DIR --gateway 127.0.0.1:50051 --out runs/eval
  ptxplain evaluate --data DIR --gateway-http http://127.0.0.1:8000 --http --out runs/eval
  ptxplain evaluate --data DIR --out runs/eval --report-only

The test split is the one stored in DIR (ptxplain data split). Results are appended as they
arrive, so an interrupted run resumes where it stopped; images whose models failed for a
transient reason are retried. Exit status: 0 when every model answered every test image,
3 when the outputs were written but something is missing (the report says what), 2 on error
(one of them: a test image that a model was trained or validated on, unless --allow-seen),
130 after Ctrl-C (one line says how many images are stored; the same command resumes). Every
invocation's replay counts are kept in metrics.json (``run.invocations``).
See docs/evaluate.md (outputs, schema) and docs/metrics.md (definitions).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.evaluate.run import CatalogClient, EvaluateConfig, EvaluationOutcome

NAME = "evaluate"
HELP = "replay the test split through the gateway and write the study's metrics and report"
EXIT_INCOMPLETE = 3
EXIT_INTERRUPTED = 130


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ptxplain.cli.client_flags import add_alias, add_gateway_flags

    add = parser.add_argument
    add("--data", type=Path, required=True, help="the data folder (with its split file)")
    add("--out", type=Path, required=True, help="the run folder (created; reused to resume)")
    add("--http", action="store_true", help="use the HTTP/JSON API (--gateway-http), not gRPC")
    add("--report-only", action="store_true", help="no replay: recompute from --out's results")
    add("--models", default="", help="comma-separated served names (default: all served)")
    add("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    add("--no-retry", action="store_true", help="do not retry transient per-model failures")
    add(
        "--allow-seen",
        action="store_true",
        help="test images a model was trained or validated on are left out of its metrics "
        "(default: they are an error)",
    )
    add("--max-failures", type=int, default=20, help="stop after N failed requests in a row")
    add("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    add("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    add(
        "--loadtest-dir",
        type=Path,
        default=Path("reports/loadtest"),
        help="folder of Locust *_stats.csv files to include (default reports/loadtest)",
    )
    add(
        "--robustness-images",
        type=int,
        default=0,
        help="positives re-sent with small perturbations for map stability (default 0: off)",
    )
    add(
        "--agreement-images",
        type=int,
        default=100,
        help="positives whose maps are compared between models (default 100)",
    )
    add(
        "--sanity",
        action="append",
        default=[],
        metavar="MODEL=WEIGHTS",
        help="run the model-randomization check in-process on these weights (repeatable)",
    )
    add("--sanity-images", type=int, default=4, help="images for --sanity (default 4)")
    add("--layout", default="auto", choices=("auto", "siim", "png", "folders"))
    add("--state-dir", type=Path, help="where the split file lives (default: --data)")
    add("--no-progress", action="store_true", help="no progress bar")
    gateway = add_gateway_flags(parser, http=True)
    add_alias(gateway, "--timeout-s", "--deadline", type=float)


def _http_address(args: argparse.Namespace) -> str:
    """--gateway-http; an HTTP URL given to --gateway with --http (the old spelling) too."""
    from ptxplain.cli.client_flags import DEFAULT_GRPC, http_url

    if args.gateway != DEFAULT_GRPC and args.gateway.startswith(("http://", "https://")):
        print(
            "ptxplain evaluate: warning: an HTTP URL in --gateway is deprecated; "
            "use --gateway-http",
            file=sys.stderr,
        )
        return http_url(args.gateway, "--gateway")
    return http_url(args.gateway_http)


def _sanity(pairs: list[str]) -> tuple[tuple[str, Path], ...]:
    from ptxplain.errors import InvalidOptionError

    parsed = []
    for pair in pairs:
        model, sep, path = pair.partition("=")
        if not sep or not model or not path:
            raise InvalidOptionError(f"--sanity {pair!r}: expected MODEL=WEIGHTS_FILE")
        parsed.append((model, Path(path)))
    return tuple(parsed)


def _config(args: argparse.Namespace) -> EvaluateConfig:
    from harness.data.dataset import ReadOptions
    from harness.evaluate.run import EvaluateConfig
    from ptxplain.errors import InvalidOptionError

    if args.n_boot < 1:
        raise InvalidOptionError(f"--n-boot must be >= 1, got {args.n_boot}")
    return EvaluateConfig(
        data=args.data,
        out=args.out,
        gateway="" if args.report_only else _address(args),
        transport="http" if args.http else "grpc",
        concurrency=args.concurrency,
        models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
        n_boot=args.n_boot,
        seed=args.seed,
        read=ReadOptions(layout=args.layout, state_dir=args.state_dir),
        loadtest_dir=args.loadtest_dir,
        robustness_images=args.robustness_images,
        agreement_images=args.agreement_images,
        sanity_weights=_sanity(args.sanity),
        sanity_images=args.sanity_images,
        max_consecutive_failures=args.max_failures,
        retry_failed=not args.no_retry,
        progress=not args.no_progress,
        allow_seen=args.allow_seen,
    )


def _address(args: argparse.Namespace) -> str:
    from ptxplain.cli.client_flags import grpc_address

    return _http_address(args) if args.http else grpc_address(args.gateway).target


def _client(args: argparse.Namespace, models: tuple[str, ...]) -> CatalogClient:
    from harness.evaluate.client import GrpcGatewayClient, HttpGatewayClient
    from ptxplain.cli.client_flags import grpc_address, root_certificates, token

    if args.http:
        return HttpGatewayClient(
            _http_address(args),
            models,
            token=token(args),
            timeout_s=args.deadline,
            ca_file=args.tls_ca,
        )
    address = grpc_address(args.gateway)
    return GrpcGatewayClient(
        address.target,
        models,
        token=token(args),
        timeout_s=args.deadline,
        root_certificates=root_certificates(args),
        tls=address.tls,
    )


def _unreachable(args: argparse.Namespace, exc: Exception) -> Exception | None:
    """The error to raise instead of ``exc`` when it says the gateway could not be reached."""
    import requests

    from ptxplain.cli.client_flags import unreachable_error

    if args.http and isinstance(exc.__cause__, requests.ConnectionError):
        return unreachable_error(_http_address(args), "http", str(exc.__cause__))
    if not args.http and "UNAVAILABLE" in str(exc):
        return unreachable_error(args.gateway, "grpc", str(exc))
    return None


def _interrupted_line(config: EvaluateConfig) -> str:
    from harness.evaluate.run import load_test_split
    from harness.store import ResultsStore
    from ptxplain.errors import PtxplainError

    try:
        _, records = load_test_split(config.data, config.read)
        stored = len(ResultsStore(config.out).load())
    except (PtxplainError, OSError, ValueError):  # the folder itself is in a bad state
        return "interrupted; run the same command to resume"
    return f"interrupted: {stored} of {len(records)} stored; run the same command to resume"


def _say(outcome: EvaluationOutcome, out: Path) -> None:
    replay = outcome.replay
    if replay is not None:
        print(
            f"replayed {replay.stored} of {replay.sent} sent ({replay.already_done} already "
            f"done), {replay.throughput:.2f} images/s",
            file=sys.stderr,
        )
        if replay.aborted:
            print(f"stopped early: {replay.aborted}; rerun to resume", file=sys.stderr)
    missing = outcome.metrics["coverage"]["missing_by_model"]
    if any(missing.values()):
        listed = ", ".join(f"{m}: {n}" for m, n in missing.items() if n)
        print(
            f"missing answers (of {outcome.metrics['coverage']['test_images']}): {listed}",
            file=sys.stderr,
        )
    print(answer_box(outcome.metrics))
    print(f"wrote {out / 'metrics.json'}, {out / 'per_image.csv'}, {out / 'report.html'}")


def answer_box(metrics: dict[str, Any]) -> str:
    """The report's answer in words, framed for a terminal."""
    from harness.metrics.answer import answer_lines

    rule = "=" * 78
    title = "ANSWER" + (" (SYNTHETIC)" if metrics.get("synthetic") else "")
    body = "\n".join(
        textwrap.fill(line, width=78, initial_indent="* ", subsequent_indent="  ")
        for line in answer_lines(metrics)
    )
    return f"{rule}\n{title}\n{rule}\n{body}\n{rule}"


def run(args: argparse.Namespace) -> int:
    from harness.evaluate.run import evaluate
    from ptxplain.errors import BackendError

    config = _config(args)
    client = None if args.report_only else _client(args, config.models)
    try:
        outcome = evaluate(config, client)
    except BackendError as exc:
        raise (_unreachable(args, exc) or exc) from exc
    except KeyboardInterrupt:
        print(_interrupted_line(config), file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if client is not None:
            client.close()
    _say(outcome, config.out)
    return 0 if outcome.complete else EXIT_INCOMPLETE
