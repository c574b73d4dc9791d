"""The data-plane table travels from the platform's journal entry to meta.json and the report."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from chaos.experiment import Setup
from chaos.experiment.dataplane import DataPlaneFields
from chaos.platforms.base import StartOptions
from chaos.platforms.local.dataplane_policy import record_policy
from chaos.platforms.shared.dataplane import DEFAULTS, resolve
from chaos.report.dataplane import dataplane_view
from chaos.rundir.dataplane import Table, tables_of
from chaos.rundir.journal import Journal, read_journal
from chaos.rundir.meta import RunMeta, read_meta, write_meta


def _meta(tmp_path: Path, tables: Mapping[str, Table]) -> RunMeta:
    return RunMeta("0", "1.40.0", "2", "3.11", 0, "dp", "2026-12-07T00:00:00", dataplane=tables)


def test_windows_tables_reach_meta_and_the_report(tmp_path: Path) -> None:
    with Journal(tmp_path) as journal:
        for window, lifetime in (
            ("mesh-crash-1", None),
            ("mesh-cert-1", 1.0),
            ("mesh-cert-2", 1.0),
        ):
            options = StartOptions(run_dir=tmp_path / "topologies" / window, record=journal.write)
            record_policy(resolve(Setup.MESH, connection_lifetime_s=lifetime), options)
        options = StartOptions(run_dir=tmp_path / "topologies" / "w3", record=journal.write)
        record_policy(resolve(Setup.SIDECAR, DataPlaneFields(outlier_detection=True)), options)
    tables = tables_of(read_journal(tmp_path))
    assert list(tables) == ["mesh", "sidecar"]
    mesh = {r.name: r for r in tables["mesh"]}
    # One window ran with the fault's own lifetime: both values are listed with their windows.
    assert mesh["connection lifetime"].value == "none (crash); 1 s (cert)"
    assert mesh["connection lifetime"].deviation
    assert not mesh["retries (outbound)"].deviation
    assert "retry/retry.go" in mesh["retries (outbound)"].source
    sidecar = {r.name: r for r in tables["sidecar"]}
    assert sidecar["outlier detection"].deviation

    write_meta(tmp_path, _meta(tmp_path, tables))
    back = read_meta(tmp_path)
    assert back.dataplane == tables
    view = dataplane_view(back)
    assert view is not None and view.setups == ["mesh", "sidecar"]
    line = next(v for v in view.lines if v.name == "load balancing")
    assert [c.value for c in line.cells] == ["LEAST_REQUEST", "ROUND_ROBIN"]
    assert "mesh: istio/istio" in line.sources and "sidecar: Envoy" in line.sources


def test_a_run_without_a_table_shows_none(tmp_path: Path) -> None:
    assert dataplane_view(_meta(tmp_path, {})) is None
    assert DEFAULTS[Setup.AMBIENT].route("waypoint").retries is not None


def test_a_verdict_says_when_an_http_fault_reached_different_pods() -> None:
    from chaos.report.dataplane import placement_note

    # checkout-slow on replica 0: the sidecar and mesh apply it at that replica, ambient's
    # waypoint for every replica (the game day's case).
    note = placement_note(
        "latency",
        {
            "sidecar": ["checkout-0"],
            "mesh": ["checkout-0"],
            "ambient": ["checkout-0", "checkout-1"],
        },
    )
    assert "ambient 2 pod(s)" in note and "not like with like" in note
    same = {"sidecar": ["checkout-0", "checkout-1"], "ambient": ["checkout-1", "checkout-0"]}
    assert placement_note("abort", same) == ""
    # A crash's blast radius is the claim itself, not a placement choice.
    assert placement_note("crash", {"sidecar": ["p-0"], "ambient": ["p-0", "f-0"]}) == ""


def test_a_verdict_states_the_measured_shares_and_names_the_pairs_that_differ() -> None:
    from chaos.report.dataplane import placement_note

    pods = {"sidecar": ["checkout-0"], "mesh": ["checkout-0"], "ambient": ["checkout-0"]}
    note = placement_note("latency", pods, {"sidecar": 0.49, "mesh": 0.52, "ambient": 1.0})
    assert note.startswith("Affected share of requests")
    assert "sidecar 49%, mesh 52%, ambient 100%" in note
    assert "(sidecar vs ambient, mesh vs ambient)" in note and "not like with like" in note
    close = placement_note("abort", pods, {"sidecar": 0.95, "ambient": 1.0})
    assert "ambient 100%" in close and "differ" not in close
    # Unmeasured shares (a platform that names no counters): the pods each setup reached.
    assert placement_note("abort", pods, {"sidecar": None, "mesh": None}) == ""
