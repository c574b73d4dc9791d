"""``sidecar-chaos cluster up|down|status``: a kind cluster with Istio ambient and the demo.

``up``: checks ``kind``, ``docker`` and ``istioctl`` on PATH (the first missing one is
named in one line, exit 2), creates the kind cluster from the shipped
``kind-config.yaml`` (one control plane, two workers) unless it exists, builds the demo image
from ``deploy/kind/Dockerfile`` and loads it into the nodes, installs the Gateway API
CRDs and Istio with the ambient profile (sidecar injection and ambient coexist), issues
the plain sidecars' certificates and the token key (:mod:`.clusteridentity`), and
applies the demo workload of every setup through :class:`KubeApi` (the official client;
no kubectl), ``sc-baseline`` included: the chain with no proxy that cost steps measure
against (:mod:`.manifests.baseline`). ``down`` deletes the kind cluster, every namespace
with it. The versions (Kubernetes, Istio, Envoy, kind, Docker) are written to
``versions.json`` in the state directory, for every run's results.

Every external command is built by a pure function returning its argv and run by
:class:`CommandRunner` with a timeout; tests check the argv without running kind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from chaos.errors import InputError, PlatformError
from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.clusteridentity import issue_identity, load_or_issue_identity
from chaos.platforms.kubernetes.istioversion import ISTIO_VERSION, istio_deviation
from chaos.platforms.kubernetes.manifests import DemoIdentity, demo_objects, traffic_objects
from chaos.platforms.kubernetes.statsmatcher import istioctl_set_flags

#: The tools ``cluster up`` runs, in the order they are checked.
REQUIRED_TOOLS: tuple[str, ...] = ("kind", "docker", "istioctl")
#: The Gateway API release whose CRDs ambient waypoints need (Istio master pins v1.6.0).
GATEWAY_API_VERSION = "v1.6.0"
GATEWAY_API_CRDS_URL = (
    "https://github.com/kubernetes-sigs/gateway-api/releases/download/"
    f"{GATEWAY_API_VERSION}/standard-install.yaml"
)
#: Overrides where `cluster up` keeps certs, token keys and versions.json (see default_state_dir).
STATE_ENV = "SIDECAR_CHAOS_KIND_DIR"
VERSIONS_FILE = "versions.json"

# Timeouts (seconds) of the external commands: bounded, generous for slow machines.
TIMEOUT_QUICK = 60.0
TIMEOUT_CREATE = 600.0
TIMEOUT_BUILD = 900.0
TIMEOUT_LOAD = 600.0
TIMEOUT_ISTIO = 900.0


class ToolMissingError(InputError):
    """A command-line tool ``cluster`` needs is not on PATH."""


def kind_config_path() -> Path:
    """The kind config shipped in the package."""
    return Path(str(resources.files(__package__).joinpath("kind-config.yaml")))


def kind_node_image(config_text: str | None = None) -> str:
    """The pinned ``kindest/node`` image of the shipped kind config."""
    text = config_text if config_text is not None else kind_config_path().read_text()
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("image:"):
            return stripped.split(":", 1)[1].strip()
    raise PlatformError("the shipped kind config names no node image")


def kubernetes_version(config_text: str | None = None) -> str:
    """The Kubernetes version of the pinned node image, e.g. ``1.37.0``."""
    image = kind_node_image(config_text)
    tag = image.split("@", 1)[0].rsplit(":", 1)[1]
    return tag.removeprefix("v")


def check_tools(
    tools: Sequence[str] = REQUIRED_TOOLS, which: Callable[[str], str | None] = shutil.which
) -> dict[str, str]:
    """The path of each tool; :class:`ToolMissingError` naming the first one missing."""
    found: dict[str, str] = {}
    for tool in tools:
        path = which(tool)
        if path is None:
            raise ToolMissingError(
                f"{tool} not found on PATH: `cluster` needs {', '.join(tools)} "
                f"(install {tool}, or put it on PATH)"
            )
        found[tool] = path
    return found


# -- command lines (pure) -----------------------------------------------------------------


def kind_get_clusters_argv() -> list[str]:
    return ["kind", "get", "clusters"]


def kind_create_argv(config: Path, name: str = names.CLUSTER_NAME) -> list[str]:
    return ["kind", "create", "cluster", "--name", name, "--config", str(config), "--wait", "120s"]


def kind_delete_argv(name: str = names.CLUSTER_NAME) -> list[str]:
    return ["kind", "delete", "cluster", "--name", name]


def kind_load_argv(image: str, name: str = names.CLUSTER_NAME) -> list[str]:
    return ["kind", "load", "docker-image", image, "--name", name]


def docker_build_argv(image: str, dockerfile: Path, context: Path) -> list[str]:
    return ["docker", "build", "--tag", image, "--file", str(dockerfile), str(context)]


def docker_pull_argv(image: str) -> list[str]:
    return ["docker", "pull", image]


def gateway_api_crds_argv(name: str = names.CLUSTER_NAME) -> list[str]:
    """Install the Gateway API CRDs with the control-plane node's own kubectl.

    Set-up only (like istioctl): the experiment steps talk to the cluster through
    the official client alone.
    """
    return [
        "docker", "exec", f"{name}-control-plane",
        "kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf",
        "apply", "--server-side", "-f", GATEWAY_API_CRDS_URL,
    ]  # fmt: skip


def istioctl_install_argv(context: str = names.KIND_CONTEXT) -> list[str]:
    """Istio with the ambient profile (istiod, ztunnel, CNI); sidecar injection still works.

    Its proxies (sidecars and waypoints) export the counters the faults verify with:
    Istio's default stats matcher leaves them out (:mod:`.statsmatcher`).
    """
    return [
        "istioctl",
        "install",
        "--context",
        context,
        "--set",
        "profile=ambient",
        *istioctl_set_flags(),
        "-y",
    ]


def istioctl_version_argv() -> list[str]:
    """The client's version only: ``cluster up`` checks it before any cluster exists."""
    return ["istioctl", "version", "--remote=false", "--short"]


def kind_version_argv() -> list[str]:
    return ["kind", "version"]


def docker_version_argv() -> list[str]:
    return ["docker", "version", "--format", "{{.Server.Version}}"]


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else "unknown"


def parse_istio_version(text: str) -> str:
    """``client version: 1.28.0`` (``istioctl version --short``) -> ``1.28.0``."""
    return _first_line(text).rsplit(":", 1)[-1].strip() or "unknown"


def parse_kind_version(text: str) -> str:
    """``kind v0.33.0 go1.25.1 linux/amd64`` -> ``v0.33.0``."""
    words = _first_line(text).split()
    return words[1] if len(words) > 1 and words[0] == "kind" else _first_line(text)


# -- running commands ---------------------------------------------------------------------


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class CommandRunner(Protocol):
    def __call__(self, argv: Sequence[str], *, timeout: float) -> CommandResult: ...


def run_command(argv: Sequence[str], *, timeout: float) -> CommandResult:
    """Run ``argv`` (no shell) with a timeout; errors become :class:`PlatformError`."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise PlatformError(f"`{' '.join(argv)}` did not finish within {timeout:.0f} s") from exc
    except OSError as exc:
        raise PlatformError(f"`{' '.join(argv)}` could not start: {exc}") from exc
    return CommandResult(tuple(argv), done.returncode, done.stdout, done.stderr)


def _checked(result: CommandResult) -> CommandResult:
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        last = lines[-1] if lines else "no output"
        raise PlatformError(f"`{' '.join(result.argv)}` failed ({result.returncode}): {last}")
    return result


class ManifestSink(Protocol):
    """What ``cluster up`` needs of :class:`~chaos.platforms.kubernetes.api.KubeApi`."""

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]: ...

    def server_version(self) -> str: ...


@dataclass
class PlannedApply:
    """A :class:`ManifestSink` that applies nothing and records what it was given (dry run)."""

    applied: list[str] = field(default_factory=list)

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        meta = manifest.get("metadata", {})
        where = f"{meta['namespace']}/" if meta.get("namespace") else ""
        self.applied.append(f"apply {manifest['kind']} {where}{meta.get('name', '?')}")
        return manifest

    def server_version(self) -> str:
        return "unknown (dry run)"


def apply_all(sink: ManifestSink, objects: Iterable[dict[str, Any]]) -> int:
    """Apply ``objects`` in order; how many."""
    count = 0
    for obj in objects:
        sink.apply(obj)
        count += 1
    return count


def deploy_demo(sink: ManifestSink, identity: DemoIdentity) -> int:
    """Apply Locust's namespace and the demo workload of every setup, ``baseline``'s
    namespace without proxies last (:mod:`.manifests.baseline`); how many objects."""
    count = apply_all(sink, traffic_objects(identity))
    for setup in names.DEPLOYED_SETUPS:
        count += apply_all(sink, demo_objects(setup, identity))
    return count


# -- the cluster --------------------------------------------------------------------------


def default_state_dir() -> Path:
    """``$SIDECAR_CHAOS_KIND_DIR``, else ``kind-sidecar-chaos`` under the tool's state directory.

    That is ``$SIDECAR_CHAOS_STATE_DIR`` when set (the tests set it), else
    ``$XDG_STATE_HOME/sidecar-chaos`` or ``~/.local/state/sidecar-chaos``: persistent,
    unlike the runtime directory the local registry may use, because the keys must
    outlive a reboot as long as the cluster does.
    """
    explicit = os.environ.get(STATE_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("SIDECAR_CHAOS_STATE_DIR")
    if base:
        return Path(base) / names.KIND_CONTEXT
    xdg = os.environ.get("XDG_STATE_HOME")
    root = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return root / "sidecar-chaos" / names.KIND_CONTEXT


#: The demo image's Dockerfile, relative to the source tree.
DOCKERFILE = Path("deploy") / "kind" / "Dockerfile"
SOURCE_ENV = "SIDECAR_CHAOS_SOURCE_DIR"


def repo_root() -> Path:
    """The source tree the demo image is built from: ``$SIDECAR_CHAOS_SOURCE_DIR``, else the
    checkout this package runs from (an editable install)."""
    explicit = os.environ.get(SOURCE_ENV)
    return Path(explicit) if explicit else Path(__file__).resolve().parents[3]


@dataclass
class ClusterSetup:
    """``cluster up|down|status`` with its collaborators passed in (tests pass fakes)."""

    state_dir: Path = field(default_factory=default_state_dir)
    run: CommandRunner = run_command
    which: Callable[[str], str | None] = shutil.which
    connect: Callable[[str], ManifestSink] | None = None
    source_dir: Path = field(default_factory=repo_root)
    log: Callable[[str], None] = print
    #: An istioctl version other than ISTIO_VERSION to go on with (recorded as a deviation).
    accept_istio: str | None = None

    def _run(self, argv: Sequence[str], timeout: float) -> CommandResult:
        return _checked(self.run(argv, timeout=timeout))

    def exists(self) -> bool:
        out = self._run(kind_get_clusters_argv(), TIMEOUT_QUICK).stdout
        return names.CLUSTER_NAME in out.split()

    def up_commands(self, *, create: bool) -> list[tuple[list[str], float]]:
        """The commands of ``up`` (after the tool check), with their timeouts, in order."""
        dockerfile = self.source_dir / DOCKERFILE
        commands: list[tuple[list[str], float]] = []
        if create:
            commands.append((kind_create_argv(kind_config_path()), TIMEOUT_CREATE))
        commands += [
            (docker_build_argv(names.APP_IMAGE, dockerfile, self.source_dir), TIMEOUT_BUILD),
            (kind_load_argv(names.APP_IMAGE), TIMEOUT_LOAD),
            (docker_pull_argv(names.ENVOY_IMAGE), TIMEOUT_LOAD),
            (kind_load_argv(names.ENVOY_IMAGE), TIMEOUT_LOAD),
            (gateway_api_crds_argv(), TIMEOUT_QUICK),
            (istioctl_install_argv(), TIMEOUT_ISTIO),
        ]
        return commands

    def up(self) -> dict[str, str]:
        """Bring the cluster and the demo up (idempotent); the versions recorded."""
        check_tools(REQUIRED_TOOLS, self.which)
        dockerfile = self.source_dir / DOCKERFILE
        if not dockerfile.is_file():
            raise InputError(
                f"{dockerfile}: not found; `cluster up` builds the demo image from a source "
                "checkout (run it from one, or set SIDECAR_CHAOS_SOURCE_DIR)"
            )
        istio = parse_istio_version(self._run(istioctl_version_argv(), TIMEOUT_QUICK).stdout)
        deviation = istio_deviation(istio, self.accept_istio)  # before anything is changed
        create = not self.exists()
        for argv, timeout in self.up_commands(create=create):
            self.log(f"$ {' '.join(argv)}")
            self._run(argv, timeout)
        if self.connect is None:
            raise PlatformError("no Kubernetes client configured for `cluster up`")
        sink = self.connect(names.KIND_CONTEXT)
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        count = deploy_demo(sink, load_or_issue_identity(self.state_dir))
        self.log(f"applied {count} objects (namespaces {', '.join(names.NAMESPACES.values())})")
        versions = self.versions(sink)
        if deviation is not None:
            versions["istio_deviation"] = deviation
        (self.state_dir / VERSIONS_FILE).write_text(json.dumps(versions, indent=2) + "\n")
        return versions

    def plan_up(self) -> list[str]:
        """What ``up`` would do on a machine without the cluster: no tool, file or cluster used.

        The tool check, the commands in order, then every object applied (private keys
        are issued in memory and never shown).
        """
        lines = [
            f"check {', '.join(REQUIRED_TOOLS)} on PATH",
            f"$ {' '.join(istioctl_version_argv())} (must be {ISTIO_VERSION})",
            "$ " + " ".join(kind_get_clusters_argv()),
        ]
        lines += [f"$ {' '.join(argv)}" for argv, _ in self.up_commands(create=True)]
        planned = PlannedApply()
        deploy_demo(planned, issue_identity(None))
        lines += planned.applied
        lines.append(f"write {self.state_dir / VERSIONS_FILE}")
        return lines

    def versions(self, sink: ManifestSink) -> dict[str, str]:
        """Kubernetes (the server's), Istio, Envoy (the sidecar image), kind and Docker."""

        def output(argv: list[str]) -> str:
            return self._run(argv, TIMEOUT_QUICK).stdout

        return {
            "kubernetes": sink.server_version(),
            "istio": parse_istio_version(output(istioctl_version_argv())),
            "envoy": names.ENVOY_IMAGE.rsplit(":", 1)[1],
            "kind": parse_kind_version(output(kind_version_argv())),
            "docker": _first_line(output(docker_version_argv())),
            "kind_node_image": kind_node_image(),
        }

    def down(self) -> bool:
        """Delete the cluster; False when there was none."""
        check_tools(("kind",), self.which)
        if not self.exists():
            return False
        self._run(kind_delete_argv(), TIMEOUT_CREATE)
        return True

    def status(self) -> dict[str, Any]:
        """Whether the cluster exists, and the versions ``up`` recorded."""
        check_tools(("kind",), self.which)
        path = self.state_dir / VERSIONS_FILE
        recorded = json.loads(path.read_text()) if path.is_file() else None
        return {"cluster": names.CLUSTER_NAME, "exists": self.exists(), "versions": recorded}


def read_versions(state_dir: Path | None = None) -> dict[str, str] | None:
    """The versions ``cluster up`` recorded (for a run's results), or None."""
    path = (state_dir or default_state_dir()) / VERSIONS_FILE
    if not path.is_file():
        return None
    loaded: dict[str, str] = json.loads(path.read_text())
    return loaded
