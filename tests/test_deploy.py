"""deploy/: the Kubernetes and KServe manifests validate offline, and agree with the guide
(docs/scaling-out.md), the Dockerfile and the app, so none of them can drift
from the others."""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import PurePosixPath

import kubernetes_validate
import pytest
import yaml
from starlette.routing import Match

import app.__main__ as cli
from app.api.grpc.server import SHUTDOWN_GRACE_S
from app.config import Settings
from app.datasets import DATASETS
from app.main import create_app
from tests.helpers.manifests import (
    DEPLOY,
    DOCKERFILE,
    GUIDE,
    KSERVE_VARIANTS,
    SERVER,
    VARIANTS,
    Doc,
    containers,
    env_of,
    expected_env,
    find,
    grpc_port,
    guide_table,
    labels_match,
    listen_port,
    render,
    rendered,
    search,
    server_container,
    serving_pod,
    split_image,
    validate,
)

# The oldest Kubernetes the manifests claim, and the newest kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())

# Kubernetes' own appProtocol for HTTP/2 over cleartext (ServicePort.appProtocol), which gRPC
# without TLS is.
H2C_APP_PROTOCOL = "kubernetes.io/h2c"


# -- schemas ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_manifests_validate_against_the_kubernetes_schemas(variant: str, version: str) -> None:
    crds = []
    for doc in rendered(variant):
        if doc["apiVersion"].startswith("serving.kserve.io/"):
            crds.append(doc["kind"])  # KServe's: checked against its schema below
        else:
            validate(doc, version)
    assert crds == ([] if variant == "k8s" else ["InferenceService"])


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("variant", VARIANTS)
def test_render_is_what_kubectl_kustomize_renders(variant: str) -> None:
    command = ["kubectl", "kustomize", str(DEPLOY / variant)]
    output = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)

    def key(doc: Doc) -> tuple[str, str]:
        return doc["kind"], doc["metadata"]["name"]

    expected = sorted((doc for doc in yaml.safe_load_all(output.stdout) if doc), key=key)
    assert sorted(rendered(variant), key=key) == expected


# -- the guide ----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_guides_settings_table_is_what_the_manifests_set(variant: str) -> None:
    table, env = guide_table(), env_of(server_container(variant))
    assert set(env) <= set(table), f"{sorted(set(env) - set(table))} missing from the guide"
    for name, cells in table.items():
        assert env.get(name) == expected_env(cells[variant]), f"{name} in deploy/{variant}"


def test_the_settings_the_guide_names_are_the_apps() -> None:
    fields = Settings.model_fields
    for name in set(re.findall(r"\bTORCHGATE_[A-Z_]+\b", GUIDE)):
        assert name.removeprefix("TORCHGATE_").lower() in fields, name
    defaults = re.findall(r"`TORCHGATE_([A-Z_]+)` \((\d+) s\)", GUIDE)  # "`NAME` (30 s)"
    assert defaults
    for name, seconds in defaults:
        assert fields[name.lower()].default == float(seconds), name


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_server_container_runs_the_image_the_guide_builds(variant: str) -> None:
    built = search(r"docker build -t (\S+) \.", GUIDE)[0]
    pushed = search(r"docker push (\S+)", GUIDE)[0]
    name, tag = split_image(built)
    registry = search(r"newName: (\S+)", GUIDE)[0]
    assert f"{registry}:{tag}" == pushed
    ours = [c["image"] for c in containers(rendered(variant)) if split_image(c["image"])[0] == name]
    assert ours and set(ours) == {built}
    # The guide's registry, set once in kustomization.yaml, reaches the serving container.
    docs = render(DEPLOY / variant, images=[{"name": name, "newName": registry, "newTag": tag}])
    assert serving_pod(variant, docs)[0]["containers"][0]["image"] == pushed


def test_the_guides_commands_name_what_the_manifests_define() -> None:
    assert set(re.findall(r"kubectl apply -k deploy/(\S+)", GUIDE)) == set(VARIANTS)
    docs = rendered("k8s")  # the Secrets it creates: tests/test_deploy_security.py
    find(docs, "Deployment", search(r"rollout status deployment/(\S+)", GUIDE)[0])
    service, forwards = search(r"port-forward service/(\S+)((?: \d+:\d+)+)", GUIDE)
    remote = [int(pair.split(":")[1]) for pair in forwards.split()]
    served = [port["port"] for port in find(docs, "Service", service)["spec"]["ports"]]
    assert remote == served, "the guide forwards every port of the Service (HTTP and gRPC)"


# -- the app and the image ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def serves(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], bool]:
    """Whether the app answers a GET on a path (its router decides; no server, no models)."""
    interval = sys.getswitchinterval()
    weights = tmp_path_factory.mktemp("weights")
    try:
        app = create_app(
            Settings(models=("cnn",), device="cpu", admin_enabled=False, weights_dir=weights)
        )
    finally:
        sys.setswitchinterval(interval)  # create_app tunes the process: leave it as it was

    def routed(path: str) -> bool:
        scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": []}
        return any(route.matches(scope)[0] is Match.FULL for route in app.router.routes)

    return routed


@pytest.mark.parametrize("variant", VARIANTS)
def test_probes_and_ports_reach_the_app(variant: str, serves: Callable[[str], bool]) -> None:
    container = server_container(variant)
    port = listen_port(container)
    named = {p.get("name"): p["containerPort"] for p in container["ports"]}
    assert len(named) == len(container["ports"]), "every port named, once"
    # The ports declared are the ones the server binds: both on plain Kubernetes; on KServe,
    # the one that Knative routes (the other protocol is another InferenceService).
    expected_ports = {
        "k8s": {"http": port, "grpc": grpc_port(container)},
        "kserve": {"http1": port},
        "kserve-grpc": {"h2c": grpc_port(container)},
    }[variant]
    assert named == expected_ports and all(expected_ports.values())
    assert grpc_port(container) != port
    if variant == "kserve":
        assert grpc_port(container) == 0, "a gRPC listener no one routes to: turn it off"
    probes = {kind: container[kind]["httpGet"] for kind in container if kind.endswith("Probe")}
    for probe in probes.values():
        assert serves(probe["path"]) and named.get(probe["port"], probe["port"]) == port
    expected = (
        {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
        if variant == "k8s"
        else {"livenessProbe": "/v2/health/live", "readinessProbe": "/v2/health/ready"}
    )
    assert {kind: probe["path"] for kind, probe in probes.items()} == expected
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_prometheus_scrapes_where_the_app_serves_metrics(serves: Callable[[str], bool]) -> None:
    pods = find(rendered("k8s"), *SERVER["k8s"])["spec"]["template"]["metadata"]["annotations"]
    scraped = [("k8s", pods, "prometheus.io")]
    for variant in KSERVE_VARIANTS:
        isvc = find(rendered(variant), *SERVER[variant])["metadata"]["annotations"]
        scraped.append((variant, isvc, "prometheus.kserve.io"))
    for variant, notes, prefix in scraped:
        assert serves(notes[f"{prefix}/path"])
        assert int(notes[f"{prefix}/port"]) == listen_port(server_container(variant))


def test_the_image_exposes_the_ports_it_serves() -> None:
    exposed = {int(port) for port in search(r"^EXPOSE ([\d ]+)$", DOCKERFILE)[0].split()}
    image = {"name": "image"}  # no command, args or env: the image's CMD and defaults
    assert exposed == {listen_port(image), grpc_port(image)}


@pytest.mark.parametrize("variant", VARIANTS)
def test_it_runs_as_the_images_user_on_a_read_only_root(variant: str) -> None:
    """Where the app writes at run time (found by running it on a read-only root): Python's
    temp dir (torch makes its inductor folder there on import: without one, no start), the
    torchvision cache that evaluation jobs unpack the dataset into, and downloaded weights."""
    pod, _ = serving_pod(variant)
    container = pod["containers"][0]
    context = {**pod.get("securityContext", {}), **container["securityContext"]}
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == int(search(r"useradd .*--uid (\d+)", DOCKERFILE)[0])
    assert context["readOnlyRootFilesystem"] is True
    scratch = {volume["name"] for volume in pod["volumes"] if "emptyDir" in volume}
    writable = [
        PurePosixPath(mount["mountPath"])
        for mount in container["volumeMounts"]
        if mount["name"] in scratch and not mount.get("readOnly")
    ]
    env = env_of(container)
    data_dir = env.get("TORCHGATE_DATA_DIR") or search(r"TORCHGATE_DATA_DIR=(\S+)", DOCKERFILE)[0]
    needed = [env.get("TMPDIR", "/tmp"), f"{data_dir}/{DATASETS['fashion-mnist'].cache}"]
    if env.get("TORCHGATE_DOWNLOAD_WEIGHTS", "true") == "true":
        needed.append(env["TORCHGATE_WEIGHTS_DIR"])
    for path in map(PurePosixPath, needed):
        assert any(path.is_relative_to(mount) for mount in writable), f"{path} is not writable"


def test_the_grace_period_outlasts_the_drain() -> None:
    """HTTP's drain and gRPC's grace both start at SIGTERM (app/draining.py)."""
    http = int(search(r'"timeout_graceful_shutdown": (\d+)', inspect.getsource(cli.serve))[0])
    drain = max(http, SHUTDOWN_GRACE_S)
    pod, _ = serving_pod("k8s")
    sleep, seconds = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep == "sleep" and pod["terminationGracePeriodSeconds"] > int(seconds) + drain


# -- the pieces fit together --------------------------------------------------------------------


def test_the_kubernetes_objects_point_at_each_other() -> None:
    docs = rendered("k8s")
    deployment = find(docs, "Deployment", "torchgate")["spec"]
    _, labels = serving_pod("k8s", docs)
    service = find(docs, "Service", "torchgate")["spec"]
    budget = find(docs, "PodDisruptionBudget", "torchgate")["spec"]
    for selector in (deployment["selector"]["matchLabels"], service["selector"]):
        assert labels_match(selector, labels)
    assert labels_match(budget["selector"]["matchLabels"], labels)
    target = find(docs, "HorizontalPodAutoscaler", "torchgate")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "torchgate")
    assert "replicas" not in deployment, "the HPA owns the replica count"
    container = server_container("k8s")
    named = {port["name"]: port["containerPort"] for port in container["ports"]}
    served = {port["name"]: port for port in service["ports"]}
    assert set(served) == set(named) == {"http", "grpc"}
    for name, port in served.items():
        assert port["targetPort"] == name and port["port"] == named[name]
    assert named["grpc"] == grpc_port(container) and named["http"] == listen_port(container)
    assert served["grpc"]["appProtocol"] == H2C_APP_PROTOCOL


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_servers_reach_redis_and_only_they_do(variant: str) -> None:
    docs = rendered(variant)
    url = env_of(server_container(variant))["TORCHGATE_STATE_URL"]
    host, port = search(r"^redis://([^:/]+):(\d+)/\d+$", url)
    service = find(docs, "Service", host)["spec"]
    assert int(port) in [p["port"] for p in service["ports"]]
    redis_labels = find(docs, "Deployment", host)["spec"]["template"]["metadata"]["labels"]
    assert labels_match(service["selector"], redis_labels)
    policy = find(docs, "NetworkPolicy", host)["spec"]
    assert labels_match(policy["podSelector"]["matchLabels"], redis_labels)
    admitted = policy["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert labels_match(admitted, serving_pod(variant, docs)[1])
