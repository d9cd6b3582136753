"""deploy/'s manifests as `kubectl apply -k` would apply them (the part of kustomize these
folders use), and lookups into them: the serving pods, their containers and variables, the
ports `python -m app serve` binds, and the guide's (docs/scaling-out.md) settings table."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from app.config import Settings

ROOT = Path(__file__).resolve().parent.parent.parent
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
Doc = dict[str, Any]


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
