"""``experiment.effective.yaml``: the experiment a run actually ran, beside the original file.

``experiment.yaml`` in a run directory is the file exactly as the user wrote it;
``--set`` overrides and ``--setup`` narrowing change what runs. The effective file
starts with a comment naming those overrides, then the validated experiment with
every default filled in (durations in seconds). The report shows both.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from chaos.experiment import Experiment
from chaos.outpaths import replace_file
from chaos.rundir import EFFECTIVE_FILE


def effective_yaml(
    experiment: Experiment, overrides: Sequence[str] = (), setups: Sequence[str] = ()
) -> str:
    """The effective experiment as YAML, with the overrides that made it in a leading comment."""
    made = [f"--set {o}" for o in overrides] + [f"--setup {s}" for s in setups]
    head = (
        "# the experiment as run, after: " + " ".join(made)
        if made
        else "# the experiment as run (no --set or --setup overrides)"
    )
    data = experiment.model_dump(mode="json", by_alias=True)
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    return f"{head}\n{body}"


def write_effective_experiment(
    run_dir: Path,
    experiment: Experiment,
    overrides: Sequence[str] = (),
    setups: Sequence[str] = (),
) -> Path:
    """Write ``experiment.effective.yaml`` into ``run_dir`` (atomically; ``OutputError``)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    text = effective_yaml(experiment, overrides, setups)
    return replace_file(run_dir / EFFECTIVE_FILE, lambda p: p.write_text(text, encoding="utf-8"))
