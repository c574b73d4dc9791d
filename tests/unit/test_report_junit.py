"""junit.xml: one testcase per setup and fault, failures and errors where they belong."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from chaos.report import write_junit
from chaos.testing.synthetic_run import SyntheticFault, SyntheticRun, write_synthetic_run

FAULTS = (SyntheticFault("abort-checkout"), SyntheticFault("crash-payments", "crash"))


def _cases(path: Path) -> dict[tuple[str, str], ET.Element]:
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    return {(c.get("classname", ""), c.get("name", "")): c for c in root.iter("testcase")}


def test_passing_run_has_a_case_per_setup_and_fault(tmp_path: Path) -> None:
    run = write_synthetic_run(tmp_path / "run", SyntheticRun(faults=FAULTS))
    path = write_junit(run)
    root = ET.parse(path).getroot()
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("4", "0", "0")
    cases = _cases(path)
    assert set(cases) == {
        (f"synthetic.{s}", f"{f}: steady state restored after the fault")
        for s in ("sidecar", "mesh")
        for f in ("abort-checkout", "crash-payments")
    }
    out = cases[("synthetic.mesh", "abort-checkout: steady state restored after the fault")]
    assert out.find("failure") is None and out.find("error") is None
    assert "time to recover: median" in (out.findtext("system-out") or "")


def test_no_recovery_no_effect_and_abort(tmp_path: Path) -> None:
    spec = SyntheticRun(
        faults=FAULTS,
        # sidecar errors outlast the 7 s recovery window after the revert (abort never
        # recovers), while its crash, timed from injection, heals inside the window
        recovery_s={"sidecar": 9.0, "mesh": 0.5},
        no_effect=(("mesh", "crash-payments"),),
        aborted=(("mesh", "abort-checkout", 1),),
    )
    path = write_junit(write_synthetic_run(tmp_path / "run", spec))
    root = ET.parse(path).getroot()
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("4", "2", "1")
    cases = {k[0].split(".")[1] + "/" + k[1].split(":")[0]: c for k, c in _cases(path).items()}
    failure = cases["sidecar/abort-checkout"].find("failure")
    assert failure is not None and "not recovered within the window" in failure.get("message", "")
    no_effect = cases["mesh/crash-payments"].find("failure")
    assert no_effect is not None and "no visible effect" in no_effect.get("message", "")
    assert cases["sidecar/crash-payments"].find("failure") is None
    error = cases["mesh/abort-checkout"].find("error")
    assert error is not None and "repetition 1: aborted" in error.get("message", "")


def test_run_without_results_is_an_error(tmp_path: Path) -> None:
    run = write_synthetic_run(tmp_path / "run", SyntheticRun(exit_code=4))
    (run / "results.json").unlink()
    root = ET.parse(write_junit(run)).getroot()
    assert (root.get("tests"), root.get("errors")) == ("1", "1")
    assert root.find("./testsuite/testcase/error") is not None
