"""report.html renders from a small synthetic results set: it parses, holds the tables and
the figures, labels a phantom run SYNTHETIC, and shows the paper's figures only for real data."""

from __future__ import annotations

import base64
import copy
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.data.dataset import ReadOptions
from harness.evaluate.run import EvaluateConfig, EvaluationOutcome, evaluate, load_test_split
from harness.report.build import PAPER_LABEL, render_report
from harness.store import ResultsStore
from tests.harness.evaluate.evaluation_fakes import FakeCatalogClient, phantom_split, records_of

LOCUST_CSV = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
    "95%,99%,Requests/s,Failures/s\n"
    "grpc,Explain,120,1,210,230,400,520,8.5,0.07\n"
)


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.images: list[str] = []
        self.open: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")
        if tag not in ("img", "meta", "br"):
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1:]}>"
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    assert not page.open, f"unclosed tags: {page.open}"
    return page


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, EvaluationOutcome]:
    root = tmp_path_factory.mktemp("report")
    data = phantom_split(root, n=12, seed=4)
    loadtest = root / "loadtest"
    loadtest.mkdir()
    (loadtest / "gateway_stats.csv").write_text(LOCUST_CSV)
    config = EvaluateConfig(
        data=data,
        out=root / "run",
        gateway="fake",
        n_boot=50,
        progress=False,
        loadtest_dir=loadtest,
    )
    return data, loadtest, evaluate(config, FakeCatalogClient(records_of(data)))


def test_report_parses_and_holds_tables_and_figures(
    run: tuple[Path, Path, EvaluationOutcome],
) -> None:
    _, _, outcome = run
    page = _parse(Path(outcome.metrics["run"]["data"]).parent / "run" / "report.html")
    text = " ".join(page.text)
    assert page.tags.count("table") >= 8
    for heading in (
        "Answer",
        "Models and their provenance",
        "Classification",
        "Confusion matrix at each model's threshold",
        "Probability calibration and PR curves",
        "Calibrated localization: floors and ceilings",
        "Image-level paired comparisons",
        "Paired AUROC",
        "Localization",
        "By lesion size",
        "Depth, parameters and FLOPs",
        "Latency",
        "Load test",
        "Gallery",
    ):
        assert heading in text, heading
    assert "not testable: 3 models" in text  # 3 models cannot carry a rank correlation
    assert "Explain" in text and "8.5" in text  # the Locust table
    pngs = [base64.b64decode(src.split(",", 1)[1]) for src in page.images]
    assert len(pngs) >= 10 and all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)
    assert page.tags.count("figure") >= 2  # gallery rows: each model's worst case and the best
    assert "worst missed positive" in text or "lowest effective heat ratio" in text
    assert "highest effective heat ratio" in text
    # Calibrated table: each model's grid, the four references and a calibrated column.
    for word in ("uniform", "random", "ideal", "mask", "calibrated [95% CI]", "grid_pointing_game"):
        assert word in text, word
    assert "DeLong z, p" in text
    assert "Brier" in text and "ECE" in text and "average precision" in text


def test_phantom_run_is_synthetic_everywhere_and_shows_no_paper_figures(
    run: tuple[Path, Path, EvaluationOutcome],
) -> None:
    data, _, _ = run
    html_text = (data.parent / "run" / "report.html").read_text()
    assert "<title>SYNTHETIC" in html_text
    headings = html_text.count("<h2>")
    assert headings >= 14
    assert html_text.count(">SYNTHETIC</span>") == headings  # every section heading
    assert "paper accuracy (" not in html_text  # no per-model paper columns on a phantom
    # The answer box still quotes the paper's figures, with their source, beside the chance level.
    answer = html_text[html_text.index('<div class="answer">') :]
    answer = answer[: answer.index("</div>")]
    assert answer.index("SYNTHETIC") < answer.index("Paper (")
    assert "secondary summary of the paper" in answer and "0.0319" in answer
    assert "Chance level: a uniform map scores EHR" in answer


def test_real_siim_data_shows_the_paper_figures_labelled(
    run: tuple[Path, Path, EvaluationOutcome], tmp_path: Path
) -> None:
    data, loadtest, outcome = run
    metrics = copy.deepcopy(outcome.metrics)
    metrics["synthetic"] = False
    _, records = load_test_split(data, ReadOptions())
    rows: list[
        dict[str, object]
    ] = []  # no per-image rows: an empty gallery and ROC must still render
    path = render_report(
        metrics,
        rows,
        records,
        ResultsStore(data.parent / "run"),
        tmp_path / "report.html",
        loadtest,
    )
    page = _parse(path)
    text = " ".join(page.text)
    assert f"paper accuracy ({PAPER_LABEL})" in text
    assert "83.2–88.2 %" in text
    assert text.count("secondary summary of the paper") >= 3  # columns, notes and the answer
    assert "0.0243" in text  # VGG-16's effective heat ratio as reported
    assert "SYNTHETIC" not in text
    assert "No positive image with a map to show" in text
