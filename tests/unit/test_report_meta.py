"""meta.json round trip and validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chaos.errors import InputError
from chaos.rundir.meta import RunMeta, read_meta, write_meta


def test_round_trip(tmp_path: Path) -> None:
    meta = RunMeta(
        tool_version="0.1.0",
        envoy_version="1.40.0",
        locust_version="2.47",
        python_version="3.11.2",
        seed=3,
        experiment_name="gameday",
        started_utc="2025-01-01T00:00:00+00:00",
        setups=("sidecar",),
        faults=("crash",),
        parameters={"rate": 80.0, "lifetime": "1s", "workers": 2, "x": None, "y": True},
    )
    write_meta(tmp_path, meta)
    assert read_meta(tmp_path) == meta
    assert meta.run_id == "gameday@2025-01-01T00:00:00+00:00"


@pytest.mark.parametrize(
    "broken",
    [{}, {"seed": "x"}, {"parameters": {"a": [1]}}, {"parameters": [1]}],
)
def test_malformed(tmp_path: Path, broken: dict[str, object]) -> None:
    good = {
        "tool_version": "0",
        "envoy_version": "0",
        "locust_version": "0",
        "python_version": "0",
        "seed": 1,
        "experiment_name": "e",
        "started_utc": "2025-01-01T00:00:00Z",
    }
    document = {} if not broken else {**good, **broken}
    (tmp_path / "meta.json").write_text(json.dumps(document))
    with pytest.raises(InputError):
        read_meta(tmp_path)
