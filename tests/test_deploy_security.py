"""deploy/'s secrets and hardening: no secret value ships in any manifest (the guide creates
each one the manifests read), Redis asks for the password the servers send, only the serving
ports reach torchgate's pods and only they reach Redis, and every pod runs unprivileged."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from app.admin_token import MIN_LENGTH
from app.config import Settings
from tests.helpers.manifests import (
    DEPLOY,
    GUIDE,
    VARIANTS,
    Doc,
    containers,
    env_of,
    find,
    labels_match,
    rendered,
    search,
    server_container,
    serving_pod,
)

# Variables whose value is a secret: they may only come from a Secret, never a literal.
SECRET_VARIABLE = re.compile(r"TOKEN|PASSWORD|_AUTH|SECRET")
# What a manifest puts where a secret goes, and anyone who read it then knows.
PLACEHOLDER = re.compile(r"\b(?:replace|change)[-_]?me\b", re.IGNORECASE)
CREATED_SECRET = re.compile(
    r"create secret generic (\S+) --from-literal=(\w+)=\"\$\(openssl rand -hex (\d+)\)\""
)


def secret_refs(node: object) -> Iterator[tuple[str, str]]:
    """Every Secret key an object reads, as (name, key)."""
    if isinstance(node, dict):
        ref = node.get("secretKeyRef")
        if isinstance(ref, dict):
            yield ref["name"], ref["key"]
        for value in node.values():
            yield from secret_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from secret_refs(item)


def pods(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    """Every pod spec a variant runs: Deployments' templates and KServe's predictors."""
    for doc in docs:
        if doc["kind"] == "Deployment":
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]
        elif doc["kind"] == "InferenceService":
            yield doc["metadata"]["name"], doc["spec"]["predictor"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_secret_value_is_shipped(variant: str) -> None:
    docs = rendered(variant)
    shipped = [doc["metadata"]["name"] for doc in docs if doc["kind"] == "Secret"]
    assert not shipped, "a Secret in git is a known value: the guide creates it with kubectl"
    for container in containers(docs):
        for var in container.get("env", []):
            if SECRET_VARIABLE.search(var["name"]):
                assert "value" not in var, f"{var['name']} is a literal in {container['name']}"
                assert var["valueFrom"]["secretKeyRef"], var["name"]


def test_no_file_in_deploy_holds_a_placeholder() -> None:
    files = [path for path in DEPLOY.rglob("*") if path.is_file()]
    assert files
    for path in files:
        found = PLACEHOLDER.search(path.read_text())
        assert found is None, f"{path.relative_to(DEPLOY)}: {found.group()!r}"


def test_the_guide_creates_every_secret_the_manifests_read() -> None:
    created = {(name, key): int(size) for name, key, size in CREATED_SECRET.findall(GUIDE)}
    read = {ref for variant in VARIANTS for ref in secret_refs(rendered(variant))}
    assert read and set(created) == read
    assert all(2 * size >= MIN_LENGTH for size in created.values()), "hex: two characters a byte"
    for variant in VARIANTS:
        env = env_of(server_container(variant))
        assert env["TORCHGATE_ADMIN_TOKEN"][0] == env["TORCHGATE_STATE_PASSWORD"][0] == "secret"
    assert {"admin_token", "state_password"} <= set(Settings.model_fields)


@pytest.mark.parametrize("variant", VARIANTS)
def test_redis_asks_for_the_password_the_servers_send(variant: str) -> None:
    docs = rendered(variant)
    env = env_of(server_container(variant))
    # The URL carries no password: it comes from the Secret, as TORCHGATE_STATE_PASSWORD.
    host = search(r"^redis://([^:/@]+):\d+/\d+$", env["TORCHGATE_STATE_URL"])[0]
    (redis,) = find(docs, "Deployment", host)["spec"]["template"]["spec"]["containers"]
    argv = [*redis.get("command", []), *redis.get("args", [])]
    assert "--requirepass" in argv, "Redis without a password"
    variable = search(r"^\$\((\w+)\)$", argv[argv.index("--requirepass") + 1])[0]
    assert env_of(redis)[variable] == env["TORCHGATE_STATE_PASSWORD"]
    # The readiness probe authenticates (redis-cli reads REDISCLI_AUTH) and wants PONG: an
    # error reply exits 0 too.
    assert variable == "REDISCLI_AUTH"
    assert "PONG" in " ".join(redis["readinessProbe"]["exec"]["command"])


def test_only_the_serving_ports_reach_torchgate() -> None:
    docs = rendered("k8s")
    pod, labels = serving_pod("k8s", docs)
    policies = [
        doc
        for doc in docs
        if doc["kind"] == "NetworkPolicy"
        and labels_match(doc["spec"]["podSelector"]["matchLabels"], labels)
    ]
    assert len(policies) == 1, "one NetworkPolicy selects the serving pods"
    spec = policies[0]["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    allowed = [port["port"] for port in rule["ports"]]
    service = find(docs, "Service", "torchgate")["spec"]
    assert allowed == [port["targetPort"] for port in service["ports"]] == ["http", "grpc"]
    assert allowed == [port["name"] for port in pod["containers"][0]["ports"]]


@pytest.mark.parametrize("variant", VARIANTS)
def test_only_torchgate_reaches_redis(variant: str) -> None:
    docs = rendered(variant)
    redis = find(docs, "NetworkPolicy", "torchgate-redis")["spec"]
    assert redis["policyTypes"] == ["Ingress"]
    (rule,) = redis["ingress"]
    (source,) = rule["from"]
    assert set(source) == {"podSelector"}, "no namespaceSelector or ipBlock: these pods only"
    assert labels_match(source["podSelector"]["matchLabels"], serving_pod(variant, docs)[1])
    assert [port["port"] for port in rule["ports"]] == [6379]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_pod_runs_unprivileged(variant: str) -> None:
    """The restricted Pod Security Standard, and no service account token: nothing here
    calls the Kubernetes API. KServe's predictor sets it on the container (Knative turns the
    pod's securityContext off by default) and accepts automountServiceAccountToken: false."""
    found = dict(pods(rendered(variant)))
    assert set(found) >= {"torchgate-redis"} and len(found) == 2
    for name, pod in found.items():
        assert pod.get("automountServiceAccountToken") is False, name
        for container in pod["containers"]:
            context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
            where = f"{name}/{container['name']}"
            assert context.get("runAsNonRoot") is True, where
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("readOnlyRootFilesystem") is True, where
            assert context.get("capabilities", {}).get("drop") == ["ALL"], where
            assert context.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
