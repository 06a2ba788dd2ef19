"""``ptxplain bench throughput`` end to end on a tiny stack: a real TorchServe and gateway, both
transports, two concurrency levels; the table carries both ratios."""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from typing import ClassVar

import numpy as np
import psutil
import pytest

from harness.bench.throughput import (
    _HANDLER_STAGES,
    _STAMP,
    ThroughputSettings,
    _cpu_lines,
    _http_caller,
    _level,
    _mean_reference,
    _phantom_images,
    _plan,
    _stamped,
    report_lines,
    run_throughput_bench,
)
from ptxplain.cli import main
from ptxplain.errors import InternalError, InvalidOptionError
from ptxplain.imaging.decode import decode_image
from ptxplain.imaging.types import DecodeLimits


def _reference(**per_image_ms: float) -> dict:
    return {
        "per_model": {
            m: {"prepare_ms": 1.0, "batch1_ms": 2 * ms, "batched_ms": ms - 1.0}
            for m, ms in per_image_ms.items()
        }
    }


def _measured(engine_ms: float, prepare_ms: float = 1.0) -> dict:
    """One reference measurement of one model: a 2 ms decode, ``prepare_ms``, and the engine at
    ``engine_ms`` per image batched (twice that at batch 1), on 2 cores."""
    batch1, batched = 2.0 + prepare_ms + 2 * engine_ms, 2.0 + prepare_ms + engine_ms
    return {
        "per_model": {
            "resnet18": {
                "prepare_ms": prepare_ms,
                "batch1_ms": 2 * engine_ms,
                "batched_ms": engine_ms,
            }
        },
        "decode_ms": 2.0,
        "decodes_per_image": 1,
        "image_ms_batch1": batch1,
        "image_ms_batched": batched,
        "limit_per_s_batch1": 2000.0 / batch1,
        "limit_per_s_batched": 2000.0 / batched,
    }


def test_the_stack_is_planned_from_the_references_costs() -> None:
    reference = _reference(resnet18=4.0, vgg16_bn=47.5, vit_s16=12.0)
    settings = ThroughputSettings(models=("resnet18", "vgg16_bn", "vit_s16"), cores=2)
    plan = _plan(settings, reference)
    assert plan["workers"] == {"resnet18": 1, "vgg16_bn": 2, "vit_s16": 1}
    assert "vgg16_bn" in "\n".join(plan["lines"])
    one_each = _plan(ThroughputSettings(models=("resnet18", "vgg16_bn"), workers=1), reference)
    assert one_each["workers"] == {"resnet18": 1, "vgg16_bn": 1}
    assert one_each["lines"] == ["workers: 1 per model (--workers 1)"]


def test_every_request_is_another_file_with_the_same_pixels(tmp_path) -> None:
    settings = ThroughputSettings(models=("resnet18",), images=3, image_size=64)
    images = _phantom_images(settings, tmp_path)
    assert len(images) == 3
    for image in images:
        copies = [_stamped(image, n) for n in (0, 1, 10**12 + 7)]
        assert len({*copies}) == 3 and {len(c) for c in copies} == {len(image)}
        first, *others = (decode_image(c, limits=DecodeLimits()) for c in copies)
        for other in others:
            np.testing.assert_array_equal(first.pixels, other.pixels)


def test_the_reference_is_the_mean_of_before_and_after() -> None:
    mean = _mean_reference(_measured(7.0), _measured(9.0))
    assert mean["image_ms_batched"] == 11.0 and mean["per_model"]["resnet18"]["batched_ms"] == 8.0
    assert mean["limit_per_s_batched"] == pytest.approx(2000.0 / 11.0)
    assert mean["batched_ms_before_after"] == [10.0, 12.0] and mean["decodes_per_image"] == 1


def test_the_cpu_of_an_image_is_split_into_engines_and_the_rest() -> None:
    ref = {
        "per_model": {
            "resnet18": {"prepare_ms": 0.2, "batch1_ms": 9.0, "batched_ms": 4.0},
            "vgg16_bn": {"prepare_ms": 0.2, "batch1_ms": 70.0, "batched_ms": 40.0},
        },
        "image_ms_batched": 46.4,  # 2 ms decode + 0.4 prepare + 44 engines
    }
    best = {"per_s": 40.0, "engine_cpu_ms_per_image": {"resnet18": 5.0, "vgg16_bn": 44.0}}
    engines, split = _cpu_lines(best, ref, cores=2)
    assert "resnet18 5.00 / 4.00 (1.25)" in engines and "vgg16_bn 44.00 / 40.00 (1.10)" in engines
    assert "all 49.0 / 44.0 (1.11)" in engines
    # 2 cores / 40 img/s = 50 ms an image: 49 in the engines, 1 in everything else (2.4 alone).
    assert "50.0 against 46.4 in-process" in split and "1.0 against 2.4" in split
    # A level without every model's CPU (an older handler, a failed model) prints nothing.
    assert _cpu_lines({"per_s": 40.0, "engine_cpu_ms_per_image": {"resnet18": 5.0}}, ref, 2) == []
    assert _cpu_lines({"per_s": 40.0}, ref, 2) == []


@pytest.mark.live
def test_throughput_bench_measures_the_stack_beside_the_reference() -> None:
    settings = ThroughputSettings(
        models=("resnet18", "efficientnet_b0"),
        size=32,
        batch_size=2,
        concurrency=(1, 2),
        seconds=0.5,
        max_windows=4,
        images=2,
        image_size=64,
    )
    figures = run_throughput_bench(settings, say=lambda line: None)
    reference = figures["reference"]
    assert reference["image_ms_batch1"] > 0 and reference["limit_per_s_batched"] > 0
    for transport in ("grpc", "http"):
        levels = figures["stack"][transport]
        assert set(levels) == {1, 2}
        for level in levels.values():
            assert level["requests"] > 0 and not level["failures"], level
            assert 3 <= len(level["windows_per_s"]) <= 4 and min(level["windows_per_s"]) > 0
            assert set(level["batch_sizes"]) <= {1, 2}
            # Each request a new file, decoded by one of the two workers and read by the other.
            assert level["decodes_per_request"] == 1.0, level
            assert {"decode", "forward_cam", "gateway", "client <-> gateway"} <= set(
                level["stages_ms"]
            )
    measured = figures["in_process_saturated"]
    # As long as a level's three counted windows.
    assert measured["processes"] == settings.cores and measured["seconds"] >= 3 * settings.seconds
    # Measured on every core at once, it is of the order of what cores x one process alone
    # reckons: a rate per second for the whole machine, not per process or per millisecond.
    # (Loose bounds: both are timed on a shared machine, and this is not a timed test.)
    ratio = measured["per_s"] / reference["limit_per_s_batched"]
    assert 0.1 < ratio < 3.0, (measured, reference["limit_per_s_batched"])
    for level in figures["stack"]["grpc"].values():
        assert "core_wait" in level["stages_ms"]
    text = "\n".join(report_lines(figures))
    assert "saturated / batched limit" in text and "concurrency-1 p50" in text
    assert f"medians of {settings.repeats} timed batches per model" in text
    assert text.count(" windows, ") == 4  # one per level and transport
    assert "saturated / in-process on every core at once" in text
    assert "workers planned for" in text and "resnet18" in figures["plan"]["workers"]
    # Each transport against the reference measured just before and after its own levels.
    around = figures["reference_by_transport"]
    assert list(around) == ["grpc", "http"]
    between = around["grpc"]["batched_ms_before_after"][1]
    assert between == around["http"]["batched_ms_before_after"][0]
    assert "http against the reference measured around its own levels" in text
    assert "decodes per request at saturation: 1.00" in text
    for transport in ("grpc", "http"):
        for level in figures["stack"][transport].values():
            engines = level["engine_cpu_ms_per_image"]
            assert set(engines) == set(settings.models) and min(engines.values()) > 0, engines
    assert "engine CPU ms per image at saturation, stack / in-process" in text
    assert "once per request (decodes shared between workers)" in text


class _Answers(http.server.BaseHTTPRequestHandler):
    """Answers POST /v1/explain as the HTTP twin would (one result per model), on kept-alive
    connections; ``reply`` = "html" answers a proxy's 502 page, "drop" answers and then closes
    the connection without saying so (as a server dropping an idle kept-alive one)."""

    protocol_version = "HTTP/1.1"
    reply = "json"
    connections: ClassVar[list[int]] = []
    bodies: ClassVar[list[bytes]] = []

    def setup(self) -> None:
        super().setup()
        type(self).connections.append(self.client_address[1])

    def do_POST(self) -> None:
        reply = self.reply  # read before answering: the test changes it once the answer is in
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).bodies.append(body)
        if reply == "html":
            payload, kind = b"<html>502 Bad Gateway</html>", "text/html"
            self.send_response(502)
        else:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            results = [
                {
                    "model": m,
                    "status": {"code": "OK"},
                    "result": {"timings": {"batch_size": 1, "decode_ms": 2.0}},
                    "gateway_timings": {"gateway_ms": 0.5, "backend_ms": 3.0},
                }
                for m in query["models"][0].split(",")
            ]
            payload, kind = json.dumps({"results": results}).encode(), "application/json"
            self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.close_connection = reply == "drop"

    def log_message(self, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    block_on_close = False  # kept-alive connections' threads are not waited for


@pytest.fixture()
def answers():
    _Answers.reply, _Answers.connections, _Answers.bodies = "json", [], []
    server = _Server(("127.0.0.1", 0), _Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_http_clients_keep_one_connection_and_read_every_models_result(answers) -> None:
    call = _http_caller(answers, ("resnet18", "vgg16_bn"))
    for number in range(3):
        results = call(b"image %d" % number)
        assert [r["model"] for r in results] == ["resnet18", "vgg16_bn"]
        assert all(r["ok"] and r["decode"] == 2.0 and r["backend_ms"] == 3.0 for r in results)
    assert _Answers.bodies == [b"image 0", b"image 1", b"image 2"]
    assert len(_Answers.connections) == 1  # kept alive, as the gRPC clients' channels are


def test_an_http_answer_without_json_is_a_failure_that_names_it(answers) -> None:
    call = _http_caller(answers, ("resnet18",))
    _Answers.reply = "html"
    with pytest.raises(InternalError, match="HTTP 502 without a JSON body"):
        call(b"image")
    _Answers.reply = "json"
    assert call(b"image")[0]["ok"]


def test_an_http_client_whose_connection_was_dropped_opens_another(answers) -> None:
    call = _http_caller(answers, ("resnet18",))
    _Answers.reply = "drop"
    assert call(b"one")[0]["ok"]
    _Answers.reply = "json"
    with pytest.raises((OSError, http.client.HTTPException)):
        call(b"two")  # the dropped connection fails this call (the bench counts it) ...
    assert call(b"three")[0]["ok"]  # ... and the next opens a new one
    assert len(_Answers.connections) == 2


def test_each_transport_is_read_against_the_reference_around_its_own_levels() -> None:
    def level(per_s: float) -> dict:
        return {
            "per_s": per_s,
            "p50_ms": 20.0,
            "p95_ms": 25.0,
            "p99_ms": 30.0,
            "batch_sizes": {8: 10},
            "failures": {},
            "stages_ms": {},
        }

    # The machine slowed down between the two transports: 10 ms an image, then 12, then 14.
    before, between, after = (_measured(ms, prepare_ms=0.0) for ms in (8.0, 10.0, 12.0))
    figures = {
        "settings": dataclasses.asdict(ThroughputSettings(models=("resnet18",))),
        "reference": _mean_reference(before, after),
        "reference_by_transport": {
            "grpc": _mean_reference(before, between),
            "http": _mean_reference(between, after),
        },
        "stack": {"grpc": {1: level(145.0)}, "http": {1: level(130.0)}},
    }
    text = "\n".join(report_lines(figures))
    # 2 cores: gRPC's limit 2000 / 11 = 181.8 /s, HTTP's 2000 / 13 = 153.8 /s (against the
    # overall 166.7 /s they would read 0.87 and 0.78).
    assert "grpc against the reference measured around its own levels" in text
    assert "(before / after: 10 / 12 ms batched): limit 181.82/s" in text
    assert "(before / after: 12 / 14 ms batched): limit 153.85/s" in text
    assert "saturated / batched limit: 0.80" in text  # gRPC: 145 / 181.8
    assert "saturated / batched limit: 0.85" in text  # HTTP: 130 / 153.8
    # One transport: its reference is the overall one, and no extra line says so.
    figures["stack"] = {"grpc": {1: level(150.0)}}
    figures["reference_by_transport"] = {"grpc": _mean_reference(before, after)}
    assert "around its own levels" not in "\n".join(report_lines(figures))


def _answer(model: str = "resnet18") -> dict:
    """One model's OK result, as the bench's callers read it."""
    stages = dict.fromkeys(_HANDLER_STAGES, 1.0)
    return {
        "model": model,
        "ok": True,
        "decode_shared": False,
        "gateway_ms": 0.5,
        "backend_ms": 6.0,
        "batch_size": 1,
        "forward_cam_cpu": 1.0,
        **stages,
    }


def _caller(latency_s):
    """A bench caller whose answer takes ``latency_s(seconds since it was made)``."""

    def make():
        made = time.perf_counter()

        def call(image: bytes) -> list[dict]:
            time.sleep(latency_s(time.perf_counter() - made))
            return [_answer()]

        return call

    return make


_IMAGES = [b"a file " + _STAMP]  # _level stamps each request's copy
_WINDOWS = ThroughputSettings(models=("resnet18",), seconds=0.3, stability_pct=30.0)


def test_a_steady_level_is_measured_over_three_windows_that_agree() -> None:
    level = _level(_caller(lambda _: 0.01), _IMAGES, 2, _WINDOWS)
    assert len(level["windows_per_s"]) == 3 and level["stable"], level["windows_per_s"]
    assert 0 <= level["spread_pct"] <= 30.0
    # Two clients at ~10 ms an answer: of the order of 200 answers a second, counted per second.
    assert 40 < level["per_s"] < 250 and not level["failures"]
    assert "3 windows, last 3 within" in "\n".join(report_lines(_one_level_figures(level)))


def test_a_steady_level_whose_answers_come_in_batches_is_stable() -> None:
    # Every answer lands on the next 0.2 s tick, as a batch does: 0.3 s windows hold two ticks
    # and one in turn (8 answers, then 4), while each answer takes one tick.
    def on_the_next_tick(_: float) -> float:
        return 0.2 - time.perf_counter() % 0.2

    level = _level(_caller(on_the_next_tick), _IMAGES, 4, _WINDOWS)
    assert level["stable"] and len(level["windows_per_s"]) <= 4, level["windows_per_s"]
    assert max(level["windows_per_s"]) > 1.5 * min(level["windows_per_s"])  # lumpy counts
    # 4 clients / 0.2 s = 20 answers a second.
    assert 14 < level["per_s"] < 24 and 150 < level["p50_ms"] < 210, level


def test_windows_before_the_stack_settles_are_listed_and_not_counted() -> None:
    # 100 ms an answer for the first 0.9 s (three windows), 10 ms after: a stack warming up.
    level = _level(_caller(lambda t: 0.1 if t < 0.9 else 0.01), _IMAGES, 2, _WINDOWS)
    first, *_ = level["windows_per_s"]
    assert len(level["windows_per_s"]) > 3 and level["stable"], level["windows_per_s"]
    assert level["per_s"] > 4 * first and level["p50_ms"] < 50.0, level


def test_a_level_that_never_settles_stops_at_max_windows_and_says_so() -> None:
    settings = dataclasses.replace(_WINDOWS, max_windows=4)
    level = _level(_caller(lambda t: 0.005 * 2 ** (t / 0.3)), _IMAGES, 1, settings)
    assert len(level["windows_per_s"]) == 4 and not level["stable"], level
    assert level["spread_pct"] > 30.0
    text = "\n".join(report_lines(_one_level_figures(level)))
    assert "4 windows, UNSTABLE: last 3 " in text and "% apart (> 30%)" in text


def test_a_level_whose_calls_all_fail_counts_them_and_is_not_stable() -> None:
    def make():
        calls = iter(range(10**9))

        def call(image: bytes) -> list[dict]:
            if next(calls) == 0:  # the warm-up call answers, then the backend is gone
                return [_answer()]
            time.sleep(0.01)
            raise ConnectionError("refused")

        return call

    settings = dataclasses.replace(_WINDOWS, max_windows=3)
    level = _level(make, _IMAGES, 1, settings)
    assert level["failures"]["ConnectionError"] > 0 and level["requests"] == 0
    assert not level["stable"] and level["spread_pct"] is None
    assert "UNSTABLE: last 3 not all answered" in "\n".join(report_lines(_one_level_figures(level)))


def test_the_report_reads_saturation_against_the_median_and_the_best_batches() -> None:
    level = _level(_caller(lambda _: 0.01), _IMAGES, 1, _WINDOWS)
    figures = _one_level_figures(level)
    reference = figures["reference"]  # 2 cores, 13 ms an image: limit 153.8 /s
    reference["image_ms_batched_best"] = 11.0  # the best batches: limit 181.8 /s
    level["per_s"] = 100.0
    text = "\n".join(report_lines(figures))
    assert "saturated / batched limit: 0.65 (target >= 0.85)" in text
    assert "(against the best timed batches: 0.55)" in text
    assert "medians of 5 timed batches per model (the best of them: 11 ms/image" in text


def _one_level_figures(level: dict) -> dict:
    return {
        "settings": dataclasses.asdict(_WINDOWS),
        "reference": _measured(10.0),
        "stack": {"grpc": {1: level}},
    }


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--seconds", "0"], "--seconds must be above 0, not 0"),
        (["--stability", "-5"], "--stability must be 0 or more"),
        (["--max-windows", "2"], "--max-windows must be 3 or more, not 2"),
        (["--repeats", "0"], "--repeats must be 1 or more"),
        (["--concurrency", "4,0"], "--concurrency must be counts of 1 or more"),
        (["--transports", "grpc,tcp"], "--transports must be grpc and/or http, not grpc,tcp"),
    ],
)
def test_bad_throughput_options_are_refused_by_name(flags, named, capsys) -> None:
    assert main(["bench", "throughput", "--archs", "resnet18", *flags]) == 2
    assert named in capsys.readouterr().err
    with pytest.raises(InvalidOptionError, match="--seconds"):
        ThroughputSettings(models=("resnet18",), seconds=-1.0)


@pytest.mark.live
@pytest.mark.parametrize("after_ready_s", [0.0, 4.0], ids=["gateway-starting", "level-running"])
def test_a_bench_stopped_with_sigterm_stops_the_stack_it_started(tmp_path, after_ready_s) -> None:
    """`timeout`, CI and `kill` send SIGTERM: the bench's TorchServe and gateway must not outlive
    it (they would hold the cores every later measurement is read against), whether it comes
    while the gateway is still starting or while a level runs."""
    command = [
        sys.executable,
        "-c",
        "import sys; from ptxplain.cli import main; sys.exit(main())",
        *("bench", "throughput", "--archs", "resnet18", "--size", "32", "--batch-size", "2"),
        *("--concurrency", "1", "--seconds", "1", "--max-windows", "100", "--repeats", "1"),
        *("--transports", "grpc", "--image-size", "64", "--threads", "1"),
    ]
    log = tmp_path / "bench.log"
    with log.open("w") as out:  # a file, not a pipe: nothing may die of a closed pipe instead
        bench = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 240
        while "TorchServe ready" not in log.read_text() and bench.poll() is None:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        time.sleep(after_ready_s)  # 4 s: the level is running (up to 100 windows of 1 s)
        assert bench.poll() is None, log.read_text()[-3000:]
        children = psutil.Process(bench.pid).children(recursive=True)
        commands = [" ".join(c.cmdline()) for c in children]
        assert any("java" in c for c in commands), commands
        if after_ready_s:
            assert any("gateway" in c for c in commands), commands
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(timeout=90) == 128 + signal.SIGTERM, log.read_text()[-3000:]
        _, alive = psutil.wait_procs(children, timeout=60)
        assert not alive, [" ".join(p.cmdline())[:120] for p in alive]
    finally:
        for process in [bench, *children]:  # a failing run leaves nothing behind either
            with contextlib.suppress(ProcessLookupError, psutil.NoSuchProcess):
                process.kill()
