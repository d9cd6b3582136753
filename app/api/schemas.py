"""Request and response bodies; they are also the OpenAPI documentation."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.serving.reinit import Scheme


class ErrorResponse(BaseModel):
    detail: str = Field(description="What went wrong and how to fix it.")


class HealthResponse(BaseModel):
    status: Literal["ok", "loading", "syncing", "ready", "failed", "draining"] = Field(
        description="syncing: loaded, replaying the control store's parameter changes; "
        "failed: the device failed or the control-store sync stalled (detail says how), the "
        "process needs a restart; "
        "draining: shutting down, finishing what is in flight."
    )
    models: dict[str, str] = Field(default_factory=dict)
    detail: str | None = Field(default=None, description="Why the process is not ready yet.")


class FailedRecordInfo(BaseModel):
    """A parameter change that could not be applied; the ones after it were."""

    version: int = Field(description="The version the control store gave the record.")
    op: str = Field(description="reinitialize, reload, or what the damaged record named.")
    error: str = Field(description="Why: unreadable, unknown op, bad arguments, or what raised.")
    process_id: str = Field(description="The process (host:pid) that reported it first.")
    failed_at: float = Field(description="Unix time of that report.")


class SkippedEntryInfo(BaseModel):
    """A control-store entry (a process, a report, a job) that does not decode; left out."""

    key: str = Field(description="Where it is in the store (a SQLite table/row, a Redis key).")
    error: str


class BatchingInfo(BaseModel):
    max_batch_size: int
    max_delay_ms: float
    max_queue: int
    queue_timeout_s: float


class ModelInfo(BaseModel):
    name: str
    kind: str
    summary: str
    status: Literal["loading", "ready", "unavailable", "error"]
    reason: str | None = None
    device: str
    dtype: str | None = Field(
        default=None,
        description="The precision served: float32, or one promoted by a precision trial.",
    )
    precision_accuracy: dict[str, Any] | None = Field(
        default=None,
        description="What the promoted precision measured against float32 when promoted "
        "(null: float32 as loaded).",
    )
    training: bool = False
    parameter_count: int | None = None
    weights_source: str | None = None
    parameters_sha256: str | None = None
    parameters_version: int | None = None
    labels: int | None = Field(default=None, description="Number of output classes.")
    input: str | None = Field(default=None, description="What the model accepts.")
    batching: BatchingInfo | None = None
    graph: str | None = Field(
        default=None,
        description="Serving form: eager, aot, script, script-onednn or compile (+ channels_last).",
    )
    graph_pending: bool = Field(
        default=False,
        description="A graph for the current weights is being built; eager answers meanwhile.",
    )
    load_seconds: float | None = None
    failed_records: list[FailedRecordInfo] = Field(
        default_factory=list,
        description="The newest parameter changes of this model that could not be applied "
        "(oldest first); later changes were applied.",
    )


class ModelList(BaseModel):
    models: list[ModelInfo]


class PredictionItem(BaseModel):
    index: int
    label: str
    probability: float


class PredictResponse(BaseModel):
    model: str
    parameters_version: int
    predictions: list[list[PredictionItem]] = Field(
        description="One list per input, in input order, probabilities descending."
    )


class JsonPredictRequest(BaseModel):
    """One of ``images`` (base64 files) or ``inputs`` (nested-list tensor) is required."""

    images: list[str] | None = None
    inputs: list | None = None  # type: ignore[type-arg]
    top_k: int | None = Field(default=None, ge=1)


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = Field(default=1, ge=1, le=64, description="How many images.")
    label: int | None = Field(
        default=None, ge=0, le=9, description="Class to draw; null cycles through all classes."
    )
    seed: int | None = Field(
        default=None, ge=0, le=2**63 - 1, description="Same seed and label, same images."
    )
    format: Literal["png", "json"] = "png"


class GenerateResponse(BaseModel):
    model: str
    seed: int
    labels: list[int]
    parameters_version: int
    images: list[str] = Field(description="Base64-encoded 28x28 greyscale PNGs.")


class ReinitializeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scheme: Scheme = "default"
    mean: float = Field(default=0.0, ge=-1e6, le=1e6, allow_inf_nan=False)
    std: float = Field(default=0.01, gt=0, le=1e6, allow_inf_nan=False)
    a: float = Field(default=-0.05, ge=-1e6, le=1e6, allow_inf_nan=False)
    b: float = Field(default=0.05, ge=-1e6, le=1e6, allow_inf_nan=False)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)


class ProcessParameters(BaseModel):
    process_id: str = Field(description="host:pid of a serving process.")
    parameters_version: int
    parameters_sha256: str
    ok: bool
    error: str | None = Field(
        default=None, description="Why this process could not apply the change, if it could not."
    )
    applied_at: float = Field(description="Unix time it applied the change (0 if it did not).")


class ParametersResponse(BaseModel):
    model: str
    parameters_sha256: str = Field(description="Checksum on the process that answered.")
    parameters_version: int = Field(description="The version the control store gave the change.")
    training: bool
    device: str
    seed: int | None = None
    converged: bool = Field(
        description="True when every live process serving the model applied this version, "
        "without error, to the same checksum, within TORCHGATE_ADMIN_WAIT_S."
    )
    processes: list[ProcessParameters] = Field(
        description="Every live process serving the model, as it stands after the change."
    )
    failed_records: list[FailedRecordInfo] = Field(
        default_factory=list,
        description="The newest parameter changes of this model that could not be applied "
        "(oldest first), this one included if it could not.",
    )
    skipped_entries: list[SkippedEntryInfo] = Field(
        default_factory=list,
        description="Damaged control-store entries left out while this call waited.",
    )


class EvaluateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image_folder: str | None = Field(
        default=None,
        max_length=1024,
        description="ImageNet models: an ImageFolder directory relative to the data dir.",
    )


class PrecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dtype: Literal["float32", "bfloat16", "float16", "int8_dynamic"] = Field(
        description="The candidate precision; int8_dynamic quantizes Linear/LSTM layers (CPU)."
    )
    max_accuracy_drop: float = Field(
        default=0.005,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="Promote only if accuracy (agreement, GAN consistency) falls at most this "
        "much below float32's; 0 refuses any drop.",
    )
    image_folder: str | None = Field(
        default=None,
        max_length=1024,
        description="ImageNet models: a labelled folder under the data dir (as /evaluate takes).",
    )
    inputs_folder: str | None = Field(
        default=None,
        max_length=1024,
        description="ImageNet models: images without labels under the data dir; the candidate "
        "is then judged by top-1 agreement with float32.",
    )
    limit: int | None = Field(
        default=None,
        ge=10,
        le=1_000_000,
        description="Use the first N samples of the set (the GAN: N/10 per class).",
    )


class JobProgress(BaseModel):
    done: int
    total: int


class JobResponse(BaseModel):
    job_id: str
    kind: str
    model: str
    owner: str = Field(description="The process (host:pid) that runs the job.")
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: JobProgress
    result: dict[str, Any] | None = None
    error: str | None = None
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None


class JobAccepted(BaseModel):
    job_id: str
    status_url: str


class AccuracyResponse(BaseModel):
    model: str
    latest: dict[str, Any] | None = Field(
        description="The latest finished evaluation of this server run, or null if none yet."
    )
    recorded: dict[str, Any] = Field(
        description="Accuracy recorded when the weights were made (training manifest or "
        "torchvision's published metrics)."
    )
