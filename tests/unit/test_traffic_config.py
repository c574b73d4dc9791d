"""Traffic configuration: loopback only, sane numbers, JSON round trip."""

from __future__ import annotations

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
    )
    assert TrafficConfig.from_json(config.to_json()) == config
    assert config.per_user_rate == 10.0
    assert config.run_time_s == 4
