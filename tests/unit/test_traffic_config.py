"""Traffic configuration: loopback only, sane numbers, JSON round trip."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chaos.errors import InputError
from chaos.traffic.config import Endpoint, TrafficConfig

EP = (("ok", "GET", "/ok", 1.0),)


def _config(tmp_path: Path, **kw: object) -> TrafficConfig:
    args: dict[str, object] = {
        "host": "http://127.0.0.1:8080",
        "out_dir": tmp_path,
        "duration_s": 3.0,
        "endpoints": EP,
    }
    args.update(kw)
    return TrafficConfig(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "host",
    [
        "http://10.0.0.1:80",
        "http://example.com",
        "http://128.0.0.1",
        "http://[::1]:80",
        "http://0.0.0.0:80",
        "ftp://127.0.0.1",
        "127.0.0.1:80",
    ],
)
def test_non_loopback_host_is_rejected(tmp_path: Path, host: str) -> None:
    with pytest.raises(InputError):
        _config(tmp_path, host=host)


@pytest.mark.parametrize("host", ["http://127.0.0.1:1", "https://127.5.6.7", "http://localhost:9"])
def test_loopback_hosts_are_accepted(tmp_path: Path, host: str) -> None:
    assert _config(tmp_path, host=host).host == host


def test_credentials_in_the_host_are_refused_for_the_built_in_users(tmp_path: Path) -> None:
    # the built-in users would not send them: a run must not look authenticated when it is not
    with pytest.raises(InputError, match="credentials") as refused:
        _config(tmp_path, host="http://user:secret@127.0.0.1:8080")
    assert "secret" not in str(refused.value)  # the error does not repeat the password
    own = tmp_path / "mine.py"
    own.write_text("from locust import HttpUser\n")
    mine = _config(tmp_path, host="http://user:secret@127.0.0.1:8080", locustfile=own)
    assert mine.locustfile == own  # a user's own locustfile sends them through Locust


def test_absolute_endpoint_and_token_url_must_be_loopback(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="endpoint far"):
        _config(tmp_path, endpoints=[("far", "GET", "http://192.168.1.1/x", 1)])
    with pytest.raises(InputError, match="token_url"):
        _config(tmp_path, token_url="http://203.0.113.9/token")
    ok = _config(tmp_path, endpoints=[("near", "GET", "http://127.0.0.2:81/x", 1)])
    assert ok.endpoints == (Endpoint("near", "GET", "http://127.0.0.2:81/x", 1),)


@pytest.mark.parametrize(
    "kw",
    [
        {"rate": 0},
        {"users": 0},
        {"duration_s": -1},
        {"request_timeout_s": float("nan")},
        {"workers": -1},
        {"workers": 20, "users": 2},
        {"endpoints": ()},
        {"endpoints": [("a", "GET", "/a", 1), ("a", "GET", "/b", 1)]},
        {"endpoints": [("a", "FETCH", "/a", 1)]},
        {"endpoints": [("a", "GET", "/a", 0)]},
        {"endpoints": [("a", "GET", "a", 1)]},
        {"locustfile": Path("/nonexistent/locustfile.py")},
    ],
)
def test_bad_values_are_input_errors(tmp_path: Path, kw: dict[str, object]) -> None:
    with pytest.raises(InputError):
        _config(tmp_path, **kw)


def test_json_round_trip(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        users=7,
        rate=70.0,
        workers=2,
        token_url="http://127.0.0.1:9/token",
        extra_env=(("A", "b"),),
        record=False,
    )
    assert TrafficConfig.from_json(config.to_json()) == config
    assert config.per_user_rate == 10.0
    assert config.run_time_s == 9  # 3 s, the 5 s request timeout for requests under way, 1 s


def test_open_loop_is_the_default_and_splits_rate_and_cap_over_processes(tmp_path: Path) -> None:
    one = _config(tmp_path, users=8, rate=80.0)
    assert one.mode == "open" and one.open_loop
    assert (one.processes, one.process_rate, one.process_in_flight) == (1, 80.0, 8)
    assert one.locust_users == 1  # one scheduling user per process
    two = _config(tmp_path, users=8, rate=80.0, workers=2, max_in_flight=41)
    assert (two.processes, two.process_rate, two.process_in_flight) == (2, 40.0, 20)
    assert two.locust_users == 2
    assert TrafficConfig.from_json(two.to_json()) == two


def test_closed_loop_and_own_locustfiles_keep_their_users(tmp_path: Path) -> None:
    closed = _config(tmp_path, users=8, mode="closed")
    assert not closed.open_loop and closed.locust_users == 8
    own = tmp_path / "mine.py"
    own.write_text("")
    mine = _config(tmp_path, users=5, endpoints=(), locustfile=own)
    assert not mine.open_loop and mine.locust_users == 5


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"mode": "poisson"}, "traffic mode must be one of open, closed"),
        ({"max_in_flight": 0}, "max_in_flight must be a whole number of at least 1"),
        ({"max_in_flight": 1, "workers": 2, "users": 2}, "at least 2 (one per Locust process)"),
    ],
)
def test_bad_open_loop_settings_are_input_errors(
    tmp_path: Path, kw: dict[str, object], message: str
) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        _config(tmp_path, **kw)
