"""A report that fails to render ends the run with one line (exit 5), never a traceback;
the results written before it stay."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.engine import finish as finish_module
from chaos.errors import FaultError, OutputError
from chaos.rundir import REPORT_FILE, RESULTS_FILE
from chaos.testing.fake_platform import FakePlatform
from tests.unit.test_engine import run


def test_a_report_that_fails_to_render_is_one_line_and_exit_5(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    starts: list[str] = []

    def second_start_fails(name: str) -> None:  # a broken window: the report has a row
        if name == "start":
            starts.append(name)
            if len(starts) == 2:
                raise FaultError("envoy exited with code 1 before it was ready")

    platform = FakePlatform(on_call=second_start_fails)
    engine, _ = run(tmp_path, platform)

    def broken(*_: object, **__: object) -> str:
        raise ValueError("a chart with no points\nsecond line")

    monkeypatch.setattr(finish_module, "report_html", broken)
    with pytest.raises(OutputError) as caught:
        finish_module.finish(
            engine.experiment,
            platform,
            engine.run_dir,
            engine.windows,
            started_utc="2026-12-07T11:00:00+00:00",
            aborted_reason=None,
            history=None,
        )
    assert caught.value.exit_code == 5
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"cannot write {engine.run_dir / REPORT_FILE}: ")
    assert "the report could not be rendered (ValueError: a chart with no points)" in message
    assert "written whole before it: " in message and RESULTS_FILE in message
    assert (engine.run_dir / RESULTS_FILE).is_file()
    assert not (engine.run_dir / REPORT_FILE).exists()
