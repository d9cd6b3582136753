"""deploy/: the Kubernetes and KServe manifests validate offline, and agree with the guide
(docs/scaling-out.md), the Dockerfile and the app, so none of them can drift
from the others."""

from __future__ import annotations

import functools
import inspect
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml
from starlette.routing import Match

import app.__main__ as cli
from app.api.grpc.server import SHUTDOWN_GRACE_S
from app.config import Settings
from app.datasets import DATASETS
from app.main import create_app

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
GUIDE = (ROOT / "docs" / "scaling-out.md").read_text()
DOCKERFILE = (ROOT / "Dockerfile").read_text()
VARIANTS = ("k8s", "kserve", "kserve-grpc")
KSERVE_VARIANTS = ("kserve", "kserve-grpc")  # Knative routes one port: REST, or gRPC
SERVER = {
    "k8s": ("Deployment", "torchgate"),
    "kserve": ("InferenceService", "torchgate"),
    "kserve-grpc": ("InferenceService", "torchgate-grpc"),
}
# The oldest Kubernetes the manifests claim, and the newest kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
Doc = dict[str, Any]

# KServe v0.13.1, serving.kserve.io/v1beta1, from its CRD (config/crd/full/
# serving.kserve.io_inferenceservices.yaml) and the SDK generated from it (kserve==0.13.1:
# kserve/models/v1beta1_inference_service_spec.py, v1beta1_predictor_spec.py,
# v1beta1_component_extension_spec.py). PredictorSpec inlines Kubernetes' PodSpec (in v0.13.1
# exactly the fields of Kubernetes 1.30's), which kubernetes-validate checks; the rest is here.
# The kserve package itself is not a test dependency (it brings ~25 packages and caps fastapi
# and numpy); this table was checked against the openapi_types/attribute_map of the models in
# kserve 0.13.1 and 0.21.0 when it was written.
KSERVE_SPEC_FIELDS = {"predictor", "explainer", "transformer"}  # predictor is required
KSERVE_COMPONENT_FIELDS: dict[str, type] = {  # scaleMetric: cpu, memory, concurrency or rps
    **dict.fromkeys(["minReplicas", "maxReplicas", "scaleTarget", "containerConcurrency"], int),
    **dict.fromkeys(["timeout", "canaryTrafficPercent"], int),
    **dict.fromkeys(["scaleMetric"], str),
    **dict.fromkeys(["logger", "batcher", "labels", "annotations", "deploymentStrategy"], dict),
}
KSERVE_SCALE_METRICS = {"cpu", "memory", "concurrency", "rps"}
KSERVE_MODEL_FORMATS = {"huggingface", "lightgbm", "model", "onnx", "paddle", "pmml"}
KSERVE_MODEL_FORMATS |= {"pytorch", "sklearn", "tensorflow", "triton", "xgboost"}
KSERVE_CONTAINER = "kserve-container"  # the one KServe routes to and mounts /mnt/models in
KSERVE_MODEL_DIR = "/mnt/models"  # where the storage initializer puts STORAGE_URI's files
KSERVE_GRPC_PORT = 8081  # KServe's gRPC port (its custom gRPC predictor: a port named h2c)
# Kubernetes' own appProtocol for HTTP/2 over cleartext (ServicePort.appProtocol), which gRPC
# without TLS is.
H2C_APP_PROTOCOL = "kubernetes.io/h2c"
# What Knative Serving refuses in a revision: pkg/apis/serving/k8s_validation.go (reserved
# paths and variables) and pkg/apis/config/features.go (pod fields that are off by default).
KNATIVE_RESERVED_PATHS = {"/", "/dev", "/dev/log", "/tmp", "/var", "/var/log"}
KNATIVE_RESERVED_ENV = {"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"}
KNATIVE_OFF_BY_DEFAULT = {"securityContext", "tolerations", "initContainers", "affinity"}


# -- rendering: the part of kustomize these folders use -----------------------------------------


def render(folder: Path, images: list[Doc] | None = None) -> list[Doc]:
    """What `kubectl apply -k folder` applies: its resources (files and sub-kustomizations),
    with each level's `patches:` then `images:` applied, the top level's images replaced by
    ``images`` if given."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(kustomization) - {"apiVersion", "kind", "resources", "patches", "images"}
    assert not unknown, f"render() does not implement kustomize's {unknown}: teach it first"
    docs: list[Doc] = []
    for entry in kustomization.get("resources", []):
        path = folder / entry
        if path.is_dir():
            docs += render(path)
        else:
            docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for patch in kustomization.get("patches", []):
        apply_patch(docs, folder, patch)
    for image in kustomization.get("images", []) if images is None else images:
        for container in containers(docs):
            name, tag = split_image(container["image"])
            if name == image["name"]:
                container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
    return docs


def apply_patch(docs: list[Doc], folder: Path, patch: Doc) -> None:
    """A `patches:` entry of JSON patch operations (RFC 6902, the kind these folders use) on
    the one object its target names."""
    assert set(patch) <= {"path", "target", "options"}, f"render() cannot apply {patch}"
    target, options = patch["target"], patch.get("options", {})
    assert set(options) <= {"allowNameChange"}, options
    api = f"{target.get('group', '')}/{target['version']}".lstrip("/")
    (doc,) = [
        d
        for d in docs
        if (d["apiVersion"], d["kind"], d["metadata"]["name"])
        == (api, target["kind"], target["name"])
    ]
    operations = yaml.safe_load((folder / patch["path"]).read_text())
    assert isinstance(operations, list), "render() only applies JSON patches"
    for operation in operations:
        *parents, last = [
            part.replace("~1", "/").replace("~0", "~") for part in operation["path"].split("/")[1:]
        ]
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) and last != "-" else last
        if operation["op"] == "test":
            assert node[key] == operation["value"], f"{patch['path']}: {operation}"
        elif operation["op"] == "replace":
            exists = key in node if isinstance(node, dict) else 0 <= key < len(node)
            assert exists, f"{patch['path']}: nothing to replace at {operation['path']}"
            node[key] = operation["value"]
        elif operation["op"] == "add" and isinstance(node, list):
            node.insert(len(node) if key == "-" else key, operation["value"])
        elif operation["op"] == "add":
            node[key] = operation["value"]
        else:
            raise AssertionError(f"render() does not implement the {operation['op']} op")
    renamed = doc["metadata"]["name"] != target["name"]
    assert not renamed or options.get("allowNameChange"), "kustomize refuses the rename"


@functools.cache
def _rendered_text(variant: str) -> str:
    return json.dumps(render(DEPLOY / variant))


def rendered(variant: str) -> list[Doc]:
    """The variant's objects as shipped (a fresh copy each time)."""
    return json.loads(_rendered_text(variant))


def split_image(reference: str) -> tuple[str, str]:
    name, colon, tag = reference.rpartition(":")
    return (name, tag) if colon and "/" not in tag else (reference, "latest")


def containers(node: object) -> Iterator[Doc]:
    """Every container of any object, found the way kustomize's image transformer does."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from value
            else:
                yield from containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from containers(item)


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def serving_pod(variant: str, docs: list[Doc] | None = None) -> tuple[Doc, Doc]:
    """The serving pods' spec and labels: the Deployment's template, or KServe's predictor."""
    server = find(rendered(variant) if docs is None else docs, *SERVER[variant])
    if variant == "k8s":
        return server["spec"]["template"]["spec"], server["spec"]["template"]["metadata"]["labels"]
    return server["spec"]["predictor"], server["spec"]["predictor"]["labels"]


def server_container(variant: str) -> Doc:
    return serving_pod(variant)[0]["containers"][0]


def env_of(container: Doc) -> dict[str, Any]:
    """Each variable's literal value, or ("secret", name, key) for a Secret reference."""
    values: dict[str, Any] = {}
    for var in container.get("env", []):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        values[var["name"]] = ("secret", ref["name"], ref["key"]) if ref else var["value"]
    return values


def _serve_port(container: Doc, setting: str) -> int:
    """A port `python -m app serve` binds: its flag, else its TORCHGATE_ variable, else the
    default (the image's environment sets neither port)."""
    cmd = json.loads(search(r"^CMD (\[.*\])$", DOCKERFILE)[0])
    if "command" in container:  # the image has no ENTRYPOINT: command + args replace its CMD
        argv = [*container["command"], *container.get("args", [])]
    else:
        argv = container.get("args") or cmd
    assert argv[:4] == cmd[:4] == ["python", "-m", "app", "serve"], argv
    flag = "--" + setting.replace("_", "-")
    if flag in argv:
        return int(argv[argv.index(flag) + 1])
    variable = f"TORCHGATE_{setting.upper()}"
    return int(env_of(container).get(variable, Settings.model_fields[setting].default))


def listen_port(container: Doc) -> int:
    """The HTTP port: --port, else TORCHGATE_PORT, else the default."""
    return _serve_port(container, "port")


def grpc_port(container: Doc) -> int:
    """The gRPC port: --grpc-port, else TORCHGATE_GRPC_PORT, else the default (0: none)."""
    return _serve_port(container, "grpc_port")


def search(pattern: str, text: str) -> tuple[str, ...]:
    match = re.search(pattern, text, re.MULTILINE)
    assert match, f"{pattern!r} not found"
    return match.groups()


def validate(doc: Doc, version: str) -> None:
    """kubernetes-validate in strict mode (unknown fields fail), with a one-line failure."""
    try:
        kubernetes_validate.validate(doc, version, strict=True)
        return
    except kubernetes_validate.ValidationError as exc:
        problem = f"{'.'.join(map(str, exc.path))}: {exc.message}"
    pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {problem}")  # without the schema


def labels_match(selector: Doc, labels: Doc) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


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


@pytest.mark.parametrize("variant", KSERVE_VARIANTS)
def test_the_inferenceservice_uses_only_kserve_fields(variant: str) -> None:
    isvc = find(rendered(variant), *SERVER[variant])
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert set(isvc) <= {"apiVersion", "kind", "metadata", "spec"}
    assert set(isvc["spec"]) <= KSERVE_SPEC_FIELDS and "predictor" in isvc["spec"]
    pod = dict(isvc["spec"]["predictor"])
    extension = {key: pod.pop(key) for key in list(pod) if key in KSERVE_COMPONENT_FIELDS}
    for key, value in extension.items():
        assert isinstance(value, KSERVE_COMPONENT_FIELDS[key]), f"predictor.{key}: {value!r}"
    assert extension["scaleMetric"] in KSERVE_SCALE_METRICS
    assert not KSERVE_MODEL_FORMATS & set(pod), "a custom predictor names no model format"
    # The rest is the pod: Kubernetes' schema, strict, with the object's metadata.
    as_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": isvc["metadata"], "spec": pod}
    validate(as_pod, "1.30.0")


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


def guide_table() -> dict[str, dict[str, str]]:
    """The guide's "Settings the manifests give": variable -> {variant: cell}."""
    section = GUIDE.split("\n## Settings the manifests give\n", 1)[1].split("\n#", 1)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("|")]
    variants = [cell.strip().removeprefix("deploy/") for cell in rows[0][1:]]
    return {
        row[0].strip().strip("`"): dict(zip(variants, (c.strip() for c in row[1:]), strict=True))
        for row in rows[2:]
    }


def expected_env(cell: str) -> Any:
    """What a cell says: unset (—), a Secret's key, or the first `literal`."""
    if cell.startswith("—"):
        return None
    secret = re.fullmatch(r"Secret `([^`]+)`, key `([^`]+)`", cell)
    return ("secret", *secret.groups()) if secret else search(r"`([^`]*)`", cell)[0]


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
    docs = rendered("k8s")
    name, key = search(r"create secret generic (\S+) --from-literal=(\w+)=", GUIDE)
    assert key in find(docs, "Secret", name)["stringData"]
    for variant in VARIANTS:
        assert env_of(server_container(variant))["TORCHGATE_ADMIN_TOKEN"] == ("secret", name, key)
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
            Settings(models=("cnn",), device="cpu", admin_token="-", weights_dir=weights)
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


@pytest.mark.parametrize("variant", KSERVE_VARIANTS)
def test_the_kserve_predictor_is_one_knative_accepts(variant: str) -> None:
    isvc = find(rendered(variant), *SERVER[variant])
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"
    predictor, _ = serving_pod(variant)
    container, env = predictor["containers"][0], env_of(predictor["containers"][0])
    assert container["name"] == KSERVE_CONTAINER
    assert listen_port(container) == 8080 and env["TORCHGATE_PORT"] == "8080"
    # One port, named for its protocol; gRPC on KServe's gRPC port.
    (port,) = container["ports"]
    assert port.get("protocol", "TCP") == "TCP"
    if variant == "kserve-grpc":
        assert port["name"] == "h2c" and port["containerPort"] == grpc_port(container)
        assert grpc_port(container) == KSERVE_GRPC_PORT
    else:
        assert port["name"] == "http1" and port["containerPort"] == listen_port(container)
    assert env["STORAGE_URI"] and env["TORCHGATE_WEIGHTS_DIR"] == KSERVE_MODEL_DIR
    assert predictor["scaleMetric"] == "concurrency" and predictor["scaleTarget"] > 0
    assert not {mount["mountPath"] for mount in container["volumeMounts"]} & KNATIVE_RESERVED_PATHS
    assert not set(env) & KNATIVE_RESERVED_ENV
    assert not set(predictor) & KNATIVE_OFF_BY_DEFAULT and "lifecycle" not in container
