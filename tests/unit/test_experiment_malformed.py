"""Every file of the malformed corpus is rejected with one SpecError at the right field and line."""

from __future__ import annotations

import pytest

from chaos.engine.preflight import platform_checks
from chaos.errors import SpecError
from chaos.experiment import SpecErrorGroup, load_experiment, source
from chaos.experiment.loader import Check
from chaos.platforms import platform_factory
from tests.unit.malformed import CORPUS_DIR, MalformedCase, cases

CASES = cases()


def _local_checks() -> Check:
    """The checks ``validate`` makes against the local platform's demo workload."""
    return platform_checks(platform_factory("local")(slots={}))


def test_corpus_is_complete() -> None:
    listed = {c.path.name for c in CASES}
    on_disk = {p.name for p in CORPUS_DIR.glob("*.yaml")} - {"expected.yaml"}
    assert listed == on_disk
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_file_is_rejected_at_its_field_and_line(case: MalformedCase) -> None:
    with pytest.raises(SpecError) as info:
        load_experiment(case.path, check=_local_checks() if case.platform else None)
    error = info.value
    assert not isinstance(error, SpecErrorGroup), f"more than one error: {error}"
    assert error.exit_code == 2
    assert (error.field, error.line) == (case.field, case.line), str(error)
    assert case.says in error.message
    text = str(error)
    assert "\n" not in text
    assert text.startswith(str(case.path) + (f":{case.line}" if case.line else "") + ": ")
    if case.field:
        assert f": {case.field}: " in text


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_pure_python_yaml_gives_the_same_field_and_line(
    case: MalformedCase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without libyaml (PyYAML's own parser) the limits and locations are the same."""
    monkeypatch.setattr(source, "_C_LOADER", None)
    with pytest.raises(SpecError) as info:
        load_experiment(case.path, check=_local_checks() if case.platform else None)
    assert (info.value.field, info.value.line) == (case.field, case.line), str(info.value)
    assert "\n" not in str(info.value)
