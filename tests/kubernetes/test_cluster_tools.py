"""``cluster up|down|status`` without kind: the tool check (also through the CLI, as a
subprocess), the command lines built, timeouts, and the demo applied through the real
``KubeApi`` to the fake API server on loopback."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from chaos.errors import InputError, PlatformError
from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.api import KubeApi
from chaos.platforms.kubernetes.cluster import (
    REQUIRED_TOOLS,
    TIMEOUT_QUICK,
    VERSIONS_FILE,
    ClusterSetup,
    CommandResult,
    ManifestSink,
    ToolMissingError,
    check_tools,
    default_state_dir,
    docker_build_argv,
    gateway_api_crds_argv,
    istioctl_install_argv,
    kind_config_path,
    kind_create_argv,
    kind_delete_argv,
    kind_load_argv,
    kind_node_image,
    kubernetes_version,
    parse_istio_version,
    parse_kind_version,
    read_versions,
    repo_root,
    run_command,
)
from chaos.platforms.kubernetes.clusteridentity import IDENTITY_FILE
from chaos.platforms.kubernetes.istioversion import istio_deviation, istio_version_note
from chaos.platforms.kubernetes.kinds import DEPLOYMENT, GATEWAY, SECRET
from chaos.testing.fakekube.api import FakeApiServer

# -- the tool check -----------------------------------------------------------------------


def _which_without(missing: str) -> object:
    def which(tool: str) -> str | None:
        return None if tool == missing else f"/usr/bin/{tool}"

    return which


@pytest.mark.parametrize("missing", REQUIRED_TOOLS)
def test_the_missing_tool_is_named_in_one_line_with_exit_2(missing: str) -> None:
    with pytest.raises(ToolMissingError) as caught:
        check_tools(REQUIRED_TOOLS, _which_without(missing))  # type: ignore[arg-type]
    message = str(caught.value)
    assert message.startswith(f"{missing} not found on PATH")
    assert "\n" not in message
    assert caught.value.exit_code == 2


def test_all_tools_present_gives_their_paths() -> None:
    found = check_tools(REQUIRED_TOOLS, _which_without("none"))  # type: ignore[arg-type]
    assert found == {t: f"/usr/bin/{t}" for t in REQUIRED_TOOLS}


def _stub(directory: Path, name: str) -> None:
    """An executable that must never run (the check comes first): it fails loudly."""
    path = directory / name
    path.write_text("#!/bin/sh\necho 'stub must not run' >&2\nexit 99\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _cli(args: Sequence[str], path_dir: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PATH"}
    env["PATH"] = str(path_dir)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "chaos.platforms.kubernetes.cli",
            *args,
            "--state-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_cli_up_names_istioctl_when_only_it_is_missing(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(bin_dir, "kind")
    _stub(bin_dir, "docker")
    done = _cli(["up"], bin_dir, tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: istioctl not found on PATH"), lines
    assert "Traceback" not in done.stderr and "stub must not run" not in done.stderr


@pytest.mark.parametrize("command", ["up", "down", "status"])
def test_cli_names_kind_when_nothing_is_on_path(command: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    done = _cli([command], empty, tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: kind not found on PATH"), lines


# -- command lines ------------------------------------------------------------------------


def test_kind_config_is_one_control_plane_and_two_pinned_workers() -> None:
    text = kind_config_path().read_text()
    roles = [line.split(":", 1)[1].strip() for line in text.splitlines() if "role:" in line]
    assert roles == ["control-plane", "worker", "worker"]
    assert len(names.NODE_HOSTNAMES) == roles.count("worker") == names.REPLICAS
    assert f"name: {names.CLUSTER_NAME}" in text
    image = kind_node_image(text)
    assert image.startswith("kindest/node:v") and "@sha256:" in image
    assert kubernetes_version(text) == image.split(":v", 1)[1].split("@", 1)[0]
    assert text.count(image) == 3


def test_command_lines() -> None:
    config = kind_config_path()
    assert kind_create_argv(config) == [
        "kind", "create", "cluster", "--name", "sidecar-chaos", "--config", str(config),
        "--wait", "120s",
    ]  # fmt: skip
    assert kind_delete_argv() == ["kind", "delete", "cluster", "--name", "sidecar-chaos"]
    assert kind_load_argv(names.APP_IMAGE) == [
        "kind", "load", "docker-image", "sidecar-chaos/demo:dev", "--name", "sidecar-chaos",
    ]  # fmt: skip
    install = istioctl_install_argv()
    assert install[:2] == ["istioctl", "install"]
    assert "profile=ambient" in install and "-y" in install
    assert install[install.index("--context") + 1] == names.KIND_CONTEXT
    crds = gateway_api_crds_argv()
    assert crds[:3] == ["docker", "exec", "sidecar-chaos-control-plane"]
    assert crds[-1].endswith("/standard-install.yaml")


def test_the_demo_image_builds_from_the_repo_dockerfile() -> None:
    root = repo_root()
    dockerfile = root / "deploy" / "kind" / "Dockerfile"
    argv = docker_build_argv(names.APP_IMAGE, dockerfile, root)
    assert argv == [
        "docker",
        "build",
        "--tag",
        names.APP_IMAGE,
        "--file",
        str(dockerfile),
        str(root),
    ]
    text = dockerfile.read_text()
    assert dockerfile.is_file() and (root / "chaos" / "traffic" / "locustfile.py").is_file()
    # the locustfile path the Locust pods use is where the Dockerfile puts the package
    assert "WORKDIR /opt/sidecar-chaos" in text and "--editable" in text


# -- running commands ---------------------------------------------------------------------


def test_a_command_that_outlives_its_timeout_is_one_clear_error() -> None:
    with pytest.raises(PlatformError, match=r"did not finish within 0 s"):
        run_command([sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.3)


def test_a_failing_command_names_itself_and_its_last_line(tmp_path: Path) -> None:
    commands = FakeCommands(fail="docker build")
    setup = ClusterSetup(
        state_dir=tmp_path,
        run=commands,
        which=_which_without("none"),  # type: ignore[arg-type]
        connect=_never_connected,
        log=lambda line: None,
    )
    with pytest.raises(PlatformError, match=r"`docker build .*` failed \(1\): no space left"):
        setup.up()
    assert not any(line.startswith("istioctl install") for line in commands.lines())


def _never_connected(context: str) -> ManifestSink:
    raise AssertionError(f"connected to {context} after a failed command")


@dataclass
class FakeCommands:
    """Plays kind, docker and istioctl: records every argv, answers like them."""

    fail: str | None = None
    istio: str = "1.28.0"
    clusters: list[str] = field(default_factory=list)
    calls: list[tuple[tuple[str, ...], float]] = field(default_factory=list)

    def __call__(self, argv: Sequence[str], *, timeout: float) -> CommandResult:
        argv = tuple(argv)
        self.calls.append((argv, timeout))
        line = " ".join(argv)
        if self.fail and line.startswith(self.fail):
            return CommandResult(argv, 1, "", "step 1/3\nno space left on device\n")
        out = ""
        if argv[:3] == ("kind", "get", "clusters"):
            out = "\n".join(self.clusters)
        elif argv[:3] == ("kind", "create", "cluster"):
            self.clusters.append(argv[argv.index("--name") + 1])
        elif argv[:3] == ("kind", "delete", "cluster"):
            self.clusters.remove(argv[argv.index("--name") + 1])
        elif argv[:2] == ("istioctl", "version"):
            out = f"client version: {self.istio}\n"
        elif argv[:2] == ("kind", "version"):
            out = "kind v0.33.0 go1.25 linux/amd64\n"
        elif argv[:2] == ("docker", "version"):
            out = "29.0.0\n"
        return CommandResult(argv, 0, out, "")

    def lines(self) -> list[str]:
        return [" ".join(a) for a, _ in self.calls]


# -- up / down / status against the fake API server ---------------------------------------


@pytest.fixture
def fake_api(tmp_path: Path) -> Iterator[tuple[FakeApiServer, Path]]:
    with FakeApiServer() as server:
        yield server, server.write_kubeconfig(tmp_path / "kubeconfig")


def _count(server: FakeApiServer) -> int:
    return len(server.cluster.dump())


def test_up_creates_installs_and_deploys_every_setup(
    fake_api: tuple[FakeApiServer, Path], tmp_path: Path
) -> None:
    server, kubeconfig = fake_api
    commands = FakeCommands()
    clients: list[KubeApi] = []

    def connect(context: str) -> ManifestSink:
        clients.append(KubeApi.from_kubeconfig(kubeconfig, context=context))
        return clients[-1]

    setup = ClusterSetup(
        state_dir=tmp_path / "state",
        run=commands,
        which=_which_without("none"),  # type: ignore[arg-type]
        connect=connect,
        log=lambda line: None,
    )
    try:
        versions = setup.up()
        lines = commands.lines()
        order = [
            "istioctl version --remote=false",  # checked before anything changes
            "kind get clusters",
            "kind create cluster",
            "docker build",
            "kind load docker-image sidecar-chaos/demo:dev",
            "docker pull envoyproxy/envoy",
            "kind load docker-image envoyproxy/envoy",
            "docker exec sidecar-chaos-control-plane kubectl",
            "istioctl install",
        ]
        assert [next(i for i, x in enumerate(lines) if x.startswith(o)) for o in order] == sorted(
            range(len(order))
        )
        assert all(t >= TIMEOUT_QUICK for _, t in commands.calls)
        # the demo is in the (fake) cluster: one single-pod Deployment per replica and setup
        for setup_name, ns in names.NAMESPACES.items():
            deployments = clients[0].list_objects(DEPLOYMENT, ns)
            assert len(deployments) == len(names.SERVICES) * names.REPLICAS, setup_name
        gateways = clients[0].list_objects(GATEWAY, names.NAMESPACES[names.Setup.AMBIENT])
        assert len(gateways) == len(names.SERVICES)
        pods = clients[0].list_pods(names.NAMESPACES[names.Setup.SIDECAR], {"app": "checkout"})
        assert len(pods) == names.REPLICAS
        # the fake schedules by nodeSelector, as the kube-scheduler does
        for pod in pods:
            assert pod.node_name == names.NODE_HOSTNAMES[pod.labels[names.LABEL_NODE]]
        assert versions["kubernetes"] == server.version
        assert versions["istio"] == "1.28.0" and versions["envoy"] == "v1.40-latest"
        assert versions["kind"] == "v0.33.0" and versions["docker"] == "29.0.0"
        assert read_versions(tmp_path / "state") == versions
        key_files = list((tmp_path / "state").rglob("*key*.pem"))
        assert key_files and all(p.stat().st_mode & 0o077 == 0 for p in key_files)

        # up again: the cluster exists (not created twice), apply does not duplicate, and the
        # identity is kept (running sidecars read their certs once: a new CA would split them)
        before = _count(server)
        secret = clients[0].get(SECRET, "sc-sidecar", "payments-1-certs")
        setup.up()
        assert sum(x.startswith("kind create") for x in commands.lines()) == 1
        assert _count(server) == before
        again = clients[0].get(SECRET, "sc-sidecar", "payments-1-certs")
        assert secret is not None and again is not None and again["data"] == secret["data"]
        assert (tmp_path / "state" / IDENTITY_FILE).stat().st_mode & 0o077 == 0

        assert setup.status()["exists"] is True
        assert setup.down() is True
        assert setup.down() is False
        status = setup.status()
        assert status["exists"] is False and status["versions"] == versions
    finally:
        for client in clients:
            client.close()


def test_status_before_any_up(tmp_path: Path) -> None:
    setup = ClusterSetup(
        state_dir=tmp_path,
        run=FakeCommands(),
        which=_which_without("none"),  # type: ignore[arg-type]
    )
    assert setup.status() == {"cluster": "sidecar-chaos", "exists": False, "versions": None}
    assert not (tmp_path / VERSIONS_FILE).exists()
    assert json.loads(json.dumps(setup.status()))["exists"] is False


def test_version_outputs_are_parsed() -> None:
    assert parse_istio_version("client version: 1.28.0\n") == "1.28.0"
    assert parse_istio_version("") == "unknown"
    assert parse_kind_version("kind v0.33.0 go1.25.1 linux/amd64\n") == "v0.33.0"
    assert parse_kind_version("something else") == "something else"


def test_the_sub_app_mounts_under_the_main_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the lead wires in: ``app.add_typer(cluster_app, name="cluster")``."""
    import typer
    from typer.testing import CliRunner

    from chaos.platforms.kubernetes.cli import cluster_app

    parent = typer.Typer()

    @parent.command()
    def other() -> None:  # a second command, so "cluster" stays a group as in the real app
        """Unused."""

    parent.add_typer(cluster_app, name="cluster")
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = CliRunner().invoke(parent, ["cluster", "status", "--state-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "kind not found on PATH" in result.output
    help_text = CliRunner().invoke(parent, ["cluster", "--help"]).output
    assert all(word in help_text for word in ("up", "down", "status"))


def test_the_state_dir_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIDECAR_CHAOS_KIND_DIR", str(tmp_path / "kind"))
    assert default_state_dir() == tmp_path / "kind"
    monkeypatch.delenv("SIDECAR_CHAOS_KIND_DIR")
    monkeypatch.setenv("SIDECAR_CHAOS_STATE_DIR", str(tmp_path / "state"))
    assert default_state_dir() == tmp_path / "state" / "kind-sidecar-chaos"
    monkeypatch.delenv("SIDECAR_CHAOS_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_state_dir() == tmp_path / "xdg" / "sidecar-chaos" / "kind-sidecar-chaos"


def test_dry_run_lists_commands_and_objects_without_any_tool(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    state = tmp_path / "state"
    done = _cli(["up", "--dry-run"], empty, state)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "check kind, docker, istioctl on PATH"
    commands = [line for line in lines if line.startswith("$ ")]
    assert commands[0] == "$ istioctl version --remote=false --short (must be 1.28.0)"
    assert commands[2].startswith("$ kind create cluster --name sidecar-chaos")
    assert commands[-1].startswith("$ istioctl install")
    applied = [line for line in lines if line.startswith("apply ")]
    assert "apply Namespace sc-mesh" in applied
    assert "apply Deployment sc-sidecar/payments-1" in applied
    assert "apply Gateway sc-ambient/checkout-waypoint" in applied
    # 72 of the three proxy setups and Locust's namespace, then sc-baseline's 13: its
    # namespace, 3 accounts, 3 Services, 6 Deployments, and nothing of a proxy
    assert len(applied) == len(set(applied)) == 85
    baseline = [line for line in applied if "sc-baseline" in line]
    assert len(baseline) == 13 and applied[-13:] == baseline
    kinds = {line.split()[1] for line in baseline}
    assert kinds == {"Namespace", "ServiceAccount", "Service", "Deployment"}
    assert "PRIVATE KEY" not in done.stdout
    assert not state.exists()  # nothing written


def test_up_outside_a_source_checkout_is_one_clear_error(tmp_path: Path) -> None:
    commands = FakeCommands()
    setup = ClusterSetup(
        state_dir=tmp_path / "state",
        run=commands,
        which=_which_without("none"),  # type: ignore[arg-type]
        source_dir=tmp_path,
        connect=_never_connected,
        log=lambda line: None,
    )
    with pytest.raises(InputError, match=r"deploy/kind/Dockerfile: not found") as caught:
        setup.up()
    assert caught.value.exit_code == 2 and commands.calls == []


# -- the istioctl version against the modelled Istio --------------------------------------


def test_another_istioctl_is_one_line_and_exit_2_before_anything_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from chaos.platforms.kubernetes import cli

    commands = FakeCommands(istio="1.27.3")

    def setup(state_dir: Path | None, accept_istio: str | None = None) -> ClusterSetup:
        return ClusterSetup(
            state_dir=tmp_path / "state",
            run=commands,
            which=_which_without("none"),  # type: ignore[arg-type]
            connect=_never_connected,
            source_dir=Path(__file__).resolve().parents[2],
            log=lambda line: None,
            accept_istio=accept_istio,
        )

    monkeypatch.setattr(cli, "_setup", setup)
    result = CliRunner().invoke(cli.cluster_app, ["up"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "istioctl version --remote=false: 1.27.3" in lines[0]
    assert "models Istio 1.28.0" in lines[0] and "--accept-istio-version 1.27.3" in lines[0]
    assert commands.lines() == ["istioctl version --remote=false --short"]  # nothing changed
    assert not (tmp_path / "state" / VERSIONS_FILE).exists()


def test_an_accepted_istioctl_version_is_recorded_as_the_deviation(
    fake_api: tuple[FakeApiServer, Path], tmp_path: Path
) -> None:
    _, kubeconfig = fake_api
    clients: list[KubeApi] = []

    def connect(context: str) -> ManifestSink:
        clients.append(KubeApi.from_kubeconfig(kubeconfig, context=context))
        return clients[-1]

    setup = ClusterSetup(
        state_dir=tmp_path / "state",
        run=FakeCommands(istio="1.27.3"),
        which=_which_without("none"),  # type: ignore[arg-type]
        connect=connect,
        log=lambda line: None,
        accept_istio="1.27.3",
    )
    try:
        versions = setup.up()
    finally:
        for client in clients:
            client.close()
    assert versions["istio"] == "1.27.3"
    assert versions["istio_deviation"].startswith("istio 1.27.3 (the tool models Istio 1.28.0")
    assert read_versions(tmp_path / "state") == versions
    with pytest.raises(InputError, match=r"1\.27\.3"):  # accepting another one is no pass
        istio_deviation("1.27.3", "1.26.0")
    assert istio_deviation("1.28.0") is None
    assert istio_version_note("1.28.0") == {}
    assert istio_version_note("1.27.3") == {
        "istio_deviation": "istiod 1.27.3; the tool models Istio 1.28.0"
    }
