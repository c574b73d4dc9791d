"""The run's schedule: every window once, repetitions outermost, setups in a seeded order."""

from __future__ import annotations

from collections import Counter

from chaos.engine.records import WindowKey, schedule
from chaos.experiment import Experiment

SETUPS = ("sidecar", "mesh", "ambient")


def experiment(
    *, seed: int = 1, repetitions: int = 3, faults: list[dict[str, object]] | None = None
) -> Experiment:
    return Experiment.model_validate(
        {
            "name": "schedule",
            "setups": list(SETUPS),
            "repetitions": repetitions,
            "seed": seed,
            "traffic": {
                "users": 1,
                "spawn_rate": 1,
                "rate": 10,
                "endpoints": [{"name": "browse", "path": "/"}],
            },
            "faults": faults
            or [
                {"type": "latency", "target": {"service": "checkout"}, "delay": "100ms"},
                {"type": "crash", "name": "boom", "target": {"service": "payments"}},
            ],
        }
    )


def _orders(keys: list[WindowKey]) -> list[tuple[str, ...]]:
    """The setup order of each (repetition, fault) block."""
    blocks: dict[tuple[int, int], list[str]] = {}
    for key in keys:
        blocks.setdefault((key.repetition, key.fault_index), []).append(key.setup)
    return [tuple(v) for v in blocks.values()]


def test_every_window_exactly_once() -> None:
    keys = schedule(experiment())
    assert len(keys) == 3 * 2 * 3
    counts = Counter((k.setup, k.fault, k.repetition) for k in keys)
    assert set(counts.values()) == {1}
    assert {k.fault for k in keys} == {"latency-1", "boom"}


def test_repetitions_are_outermost_and_faults_in_file_order() -> None:
    keys = schedule(experiment())
    assert [k.repetition for k in keys] == sorted(k.repetition for k in keys)
    for repetition in range(3):
        indices = [k.fault_index for k in keys if k.repetition == repetition]
        assert indices == sorted(indices)


def test_the_same_seed_gives_the_same_order() -> None:
    assert schedule(experiment(seed=42)) == schedule(experiment(seed=42))


def test_setups_are_interleaved_not_always_in_file_order() -> None:
    orders = _orders(schedule(experiment(seed=7, repetitions=10)))
    assert all(sorted(o) == sorted(SETUPS) for o in orders)
    assert len(set(orders)) >= 3, orders
    assert len({o[0] for o in orders}) == 3, "every setup should go first sometimes"


def test_different_seeds_give_different_orders() -> None:
    schedules = {tuple(schedule(experiment(seed=s))) for s in range(10)}
    assert len(schedules) > 1


def test_a_fault_narrowed_to_some_setups_runs_only_there() -> None:
    keys = schedule(
        experiment(
            repetitions=2,
            faults=[
                {"type": "policy-desync", "target": {"service": "frontend", "setups": ["mesh"]}},
                {"type": "abort", "target": {"service": "checkout"}},
            ],
        )
    )
    assert {k.setup for k in keys if k.fault == "policy-desync-1"} == {"mesh"}
    assert len([k for k in keys if k.fault == "policy-desync-1"]) == 2
    assert len([k for k in keys if k.fault == "abort-2"]) == 6


def test_labels_and_slugs_count_repetitions_from_one() -> None:
    key = WindowKey("mesh", 0, "checkout-slow", 0)
    assert key.label == "mesh/checkout-slow#1"
    assert key.slug == "mesh-checkout-slow-1"
