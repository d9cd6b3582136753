"""deploy/kserve and deploy/kserve-grpc: the InferenceService uses only KServe's fields, and
its predictor is one Knative Serving accepts."""

from __future__ import annotations

import pytest

from tests.helpers.manifests import (
    KSERVE_VARIANTS,
    SERVER,
    env_of,
    find,
    grpc_port,
    listen_port,
    rendered,
    serving_pod,
    validate,
)

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
# What Knative Serving refuses in a revision: pkg/apis/serving/k8s_validation.go (reserved
# paths and variables) and pkg/apis/config/features.go (pod fields that are off by default).
KNATIVE_RESERVED_PATHS = {"/", "/dev", "/dev/log", "/tmp", "/var", "/var/log"}
KNATIVE_RESERVED_ENV = {"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"}
KNATIVE_OFF_BY_DEFAULT = {"securityContext", "tolerations", "initContainers", "affinity"}


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
