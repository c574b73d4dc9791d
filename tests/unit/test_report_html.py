"""The HTML report built from synthetic run directories whose outcome is known."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from chaos.report import render_report
from chaos.testing.synthetic_run import SyntheticFault, SyntheticRun, write_synthetic_run

EVIL = "<script>alert('x')</script> \"quoted\" & more"
FAULTS = (SyntheticFault("abort-checkout"), SyntheticFault("crash-payments", "crash", pods_hit=2))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = SyntheticRun(description=EVIL, faults=FAULTS, repetitions=3)
    return write_synthetic_run(tmp_path_factory.mktemp("run") / "run", spec)


@pytest.fixture(scope="module")
def html(run_dir: Path) -> str:
    return render_report([run_dir], run_dir / "report.html").read_text(encoding="utf-8")


def _seconds(x: float) -> str:
    return f"{x:.2f} s"


def test_verdict_per_fault_says_how_many_more_repetitions_would_decide(html: str) -> None:
    # 3 against 3: the smallest two-sided permutation p is 0.1, above the Holm share
    for fault in ("abort-checkout", "crash-payments"):
        assert re.search(
            rf'<span class="fault">{fault}</span><span class="badge undecided">undecided</span>'
            r".*?mesh had the lowest median time to recover"
            r".*?undecided, would need about \d+ more repetition\(s\) per setup",
            html,
            re.S,
        )


def test_table_numbers_match_results_json(run_dir: Path, html: str) -> None:
    document = json.loads((run_dir / "results.json").read_text())
    assert len(document["summary"]) == 4
    for s in document["summary"]:
        ttr = s["time_to_recover_s"]
        ci = f"[{ttr['low']:.2f}–{ttr['high']:.2f}]"
        cell = f'<strong>{_seconds(ttr["median"])}</strong> <span class="ci">{ci}</span>'
        assert cell in html, (s["setup"], s["fault"], cell)
        assert f"{s['error_rate']['median'] * 100:.1f} %" in html
        assert f"{s['failed_requests']['median']:,.0f}" in html


def test_blast_radius_from_fault_plans(html: str) -> None:
    assert 'title="mesh/checkout-0, mesh/checkout-1">2<' in html
    assert 'title="sidecar/checkout-0">1<' in html


def test_user_strings_are_escaped(html: str) -> None:
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &#34;quoted&#34; &amp; more" in html


def test_nothing_is_loaded_from_the_network(html: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "Content-Security-Policy" in html
    assert "default-src 'none'" in html
    assert "<script" not in html.lower()
    images = re.findall(r'src="([^"]+)"', html)
    assert images and all(src.startswith("data:image/png;base64,") for src in images)
    # timeline + spread + CDF per fault
    assert len(images) == 6


def test_method_section_has_versions_seed_and_exact_experiment(run_dir: Path, html: str) -> None:
    for text in ("1.40.0", "2.47.0", "0.1.0", "rate_rps", "connection_lifetime"):
        assert text in html
    assert "<dt>seed</dt><dd>7</dd>" in html
    experiment = (run_dir / "experiment.yaml").read_text()
    escaped = experiment.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    escaped = escaped.replace('"', "&#34;").replace("'", "&#39;")
    assert f"<pre>{escaped}</pre>" in html


def test_counters_shown_apart_from_client_errors(html: str) -> None:
    # the synthetic mesh proxies retried 40 times per window; sidecar never
    assert re.search(r"mesh</td>\s*<td class=\"wrap\">http [\d,]+</td><td>40</td>", html)
    assert re.search(r"sidecar</td>\s*<td class=\"wrap\">http [\d,]+</td><td>0</td>", html)


def test_supported_verdict_with_enough_repetitions(tmp_path: Path) -> None:
    spec = SyntheticRun(faults=(SyntheticFault("abort-checkout"),), repetitions=6)
    run = write_synthetic_run(tmp_path / "run", spec)
    html = render_report([run], tmp_path / "r.html").read_text()
    assert re.search(r"mesh recovered fastest: [\d.]+ s faster than sidecar", html)


def test_no_effect_verdict(tmp_path: Path) -> None:
    spec = SyntheticRun(
        faults=(SyntheticFault("abort-checkout"),),
        no_effect=(("sidecar", "abort-checkout"), ("mesh", "abort-checkout")),
    )
    html = render_report([write_synthetic_run(tmp_path / "run", spec)], tmp_path / "r.html")
    assert "The fault had no visible effect in any setup" in html.read_text()


def test_several_runs_compared(tmp_path: Path) -> None:
    last_week = write_synthetic_run(
        tmp_path / "a",
        SyntheticRun(faults=FAULTS, started_utc="2025-01-01T02:00:00+00:00", seed=1),
    )
    tonight = write_synthetic_run(
        tmp_path / "b",
        SyntheticRun(
            faults=FAULTS,
            started_utc="2025-01-08T02:00:00+00:00",
            seed=2,
            recovery_s={"sidecar": 4.0, "mesh": 0.5},
        ),
    )
    html = render_report([last_week, tonight], tmp_path / "r.html").read_text()
    assert "Time to recover across runs" in html
    assert "R0: synthetic · 2025-01-01 02:00:00 UTC" in html
    assert "R1: synthetic · 2025-01-08 02:00:00 UTC" in html
    sidecar_rows = re.findall(
        r"abort-checkout</td><td><span[^>]*></span>sidecar</td>(.*?)</tr>", html, re.S
    )
    assert sidecar_rows
    change = re.findall(r"<td>([+-][\d.]+) s \(([\d.]+)x\)</td>", sidecar_rows[0])
    assert change and float(change[0][0]) > 1.0  # sidecar got about 2 s slower


def test_missing_samples_and_meta_still_render(tmp_path: Path) -> None:
    run = write_synthetic_run(tmp_path / "run", SyntheticRun())
    for f in (run / "samples").iterdir():
        f.unlink()
    (run / "meta.json").unlink()
    html = render_report([run], tmp_path / "r.html").read_text()
    assert "no latency CDF" in html
    assert "<dd>missing</dd>" in html


def test_verdicts_for_not_recovered_and_partly_supported(tmp_path: Path) -> None:
    from chaos.report.rundata import load_run
    from chaos.report.verdict import fault_verdict

    never = load_run(
        write_synthetic_run(
            tmp_path / "a", SyntheticRun(repetitions=5, recovery_s={"sidecar": 9.0, "mesh": 0.5})
        )
    )
    v = fault_verdict("abort-checkout", never.analysis.summaries, never.analysis.comparisons)
    assert v.level == "supported" and v.best == "mesh"
    assert "mesh recovered fastest: it recovered while sidecar did not" in v.sentence
    assert "Sidecar did not recover within the window in 5 of 5 repetitions." in v.sentence
    close = load_run(
        write_synthetic_run(
            tmp_path / "b",
            SyntheticRun(
                repetitions=5,
                setups=("sidecar", "mesh", "ambient"),
                recovery_s={"sidecar": 2.0, "mesh": 0.5, "ambient": 0.52},
                jitter=0.3,
            ),
        )
    )
    v = fault_verdict("abort-checkout", close.analysis.summaries, close.analysis.comparisons)
    assert re.search(
        r"faster than sidecar .*; against (mesh|ambient) the difference is not supported",
        v.sentence,
    )
