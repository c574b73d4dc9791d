"""The Kubernetes platform's fixtures (fake API server, demo workload), from ``fakecluster``."""

from tests.kubernetes.fakecluster import (  # noqa: F401 - pytest finds fixtures here
    api,
    fake_server,
    kubeconfig,
    pod_exec,
    seeded,
)
