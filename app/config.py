"""Settings: the one place that reads the environment (``TORCHGATE_*``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import torch.hub
from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ALL_MODELS: tuple[str, ...] = ("alexnet", "vgg16", "resnet101", "cnn", "lstm", "gan")

GraphMode = Literal["auto", "eager", "aot", "script", "script-onednn", "compile"]


def default_weights_dir() -> Path:
    """torch hub's checkpoint folder, so weights already fetched by torchvision are reused."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _parse_per_model(value: object) -> object:
    """Accept ``16`` (every model) or ``cnn=64,resnet101=8`` (per model) from the environment."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return {}
    if "=" not in text:
        return {"*": text}
    pairs = (item.split("=", 1) for item in text.split(",") if item.strip())
    return {name.strip(): number.strip() for name, number in pairs}


class Settings(BaseSettings):
    """Every knob of the service; each is also an environment variable ``TORCHGATE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="TORCHGATE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # The Open Inference Protocol over gRPC (inference.GRPCInferenceService), on TORCHGATE_HOST
    # in the same process and event loop as HTTP; 8001 as in Triton, 0 turns it off. With
    # --workers N every worker binds it (SO_REUSEPORT) and the kernel spreads the connections.
    grpc_port: int = Field(default=8001, ge=0, le=65535)
    # grpcio's server on that port; app/api/grpc/options.py says what each of these bounds.
    # Streams per connection (about twice what a client keeps in flight: closed ones linger):
    grpc_max_concurrent_streams: int = Field(default=256, ge=1)
    # Calls in progress in the process, all connections together (more: RESOURCE_EXHAUSTED):
    grpc_max_concurrent_rpcs: int = Field(default=128, ge=1)
    # Connections the process holds at once (more are closed as they come):
    grpc_max_connections: int = Field(default=1000, ge=1)
    # How long a call's request message may take to arrive whole (then DEADLINE_EXCEEDED):
    grpc_message_timeout_s: float = Field(default=60.0, gt=0)
    # How long a new connection may take over its TLS or HTTP/2 handshake:
    grpc_handshake_timeout_s: float = Field(default=10.0, gt=0)
    # The server pings a connection idle this long (finds dead peers):
    grpc_keepalive_time_s: float = Field(default=60.0, gt=0)
    # ... and drops it when that ping gets no answer in this long:
    grpc_keepalive_timeout_s: float = Field(default=20.0, gt=0)
    # Clients may ping at most this often (more often, twice: GOAWAY ENHANCE_YOUR_CALM):
    grpc_min_ping_interval_s: float = Field(default=10.0, gt=0)
    # Whether clients may ping a connection that has no call in progress:
    grpc_keepalive_permit_without_calls: bool = True
    # Keepalive pings the server sends with no data in between (0: no limit):
    grpc_max_pings_without_data: int = Field(default=0, ge=0)
    # A connection without calls this long is closed (GOAWAY); 0: never:
    grpc_max_connection_idle_s: float = Field(default=300.0, ge=0)
    # A connection this old is told to reconnect (GOAWAY: channels rebalance); 0: never:
    grpc_max_connection_age_s: float = Field(default=1800.0, ge=0)
    # ... and its calls in flight get this long to finish:
    grpc_max_connection_age_grace_s: float = Field(default=30.0, ge=0)
    # TLS: the server's certificate chain and private key (PEM files); unset: plaintext:
    grpc_tls_cert_file: Path | None = None
    grpc_tls_key_file: Path | None = None
    # A CA whose certificates clients must present (mutual TLS); unset: any client:
    grpc_tls_client_ca_file: Path | None = None
    device: str = "auto"
    models: Annotated[tuple[str, ...], NoDecode] = ALL_MODELS
    weights_dir: Path = Field(default_factory=default_weights_dir)
    download_weights: bool = True
    verify_weights: bool = True
    checkpoint_dir: Path = Path("models")
    data_dir: Path = Path("data")
    admin_token: SecretStr | None = None
    admin_enabled: bool = True
    admin_host: str = "127.0.0.1"
    admin_port: int | None = Field(default=None, ge=0, le=65535)
    max_batch_size: Annotated[dict[str, int], NoDecode] = Field(default_factory=dict)
    max_batch_delay_ms: Annotated[dict[str, float], NoDecode] = Field(default_factory=dict)
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    # Request bytes the process holds at once, all requests together (app/api/upload_budget.py)
    max_upload_bytes_in_flight: int = Field(default=512 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(default=40_000_000, gt=0)
    max_images_per_request: int = Field(default=64, gt=0)
    max_tensor_elements: int = Field(default=16_777_216, gt=0)
    max_json_depth: int = Field(default=32, ge=6, le=1000)
    # Read deadlines and bounds for HTTP clients, for a container with no proxy in front
    # (app/api/connections.py, app/api/middleware.py): a request's head must arrive whole
    # within header_timeout_s and header bytes; a body may pause at most body_chunk_timeout_s
    # between chunks, and must arrive whole within body_timeout_s (unset: at a rate of
    # min_upload_bytes_per_s for the largest body allowed, at least 30 s); at most
    # max_connections connections (and requests) per process, more get 503.
    header_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    max_header_bytes: int = Field(default=32 * 1024, ge=1024)
    body_chunk_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    body_timeout_s: float | None = Field(default=None, gt=0)
    min_upload_bytes_per_s: int = Field(default=100_000, gt=0)
    max_connections: int = Field(default=1024, ge=1)
    # JSON bodies larger than this are parsed (and inflated, and scanned) off the event loop
    json_offload_bytes: int = Field(default=64 * 1024, ge=0)
    max_queue: int | None = Field(default=None, gt=0)
    queue_timeout_s: float = Field(default=30.0, gt=0)
    # Inputs waiting to be explained per model (POST .../explain, the v2 attributions output);
    # more: 503 with Retry-After. Explanations run after every predict batch (lower priority).
    explain_queue: int = Field(default=16, gt=0)
    half: bool = False
    half_dtype: Literal["float16", "bfloat16"] = "float16"
    graph: GraphMode = "auto"
    # "aot" graphs (AOTInductor packages): where they are cached (default <data_dir>/compiled),
    # whether a cache miss is compiled (in one low-priority background thread, eager serving
    # meanwhile; false: cached packages only), whether readiness waits for them, and the
    # compiler's parallel jobs.
    compiled_dir: Path | None = None
    compile_graphs: bool = True
    wait_for_graphs: bool = False
    graph_compile_threads: int = Field(default=1, ge=1)
    channels_last: bool | None = None
    load_concurrency: int = Field(default=2, ge=1)
    workers: int = Field(default=1, ge=1)
    access_log: bool = True
    # FastAPI's own OpenTelemetry spans, metrics and logs, for when an OpenTelemetry SDK is
    # configured in the process; off, FastAPI skips asking for providers on every request.
    opentelemetry: bool = False
    log_format: Literal["text", "json"] = "text"
    torch_threads: int | None = Field(default=None, ge=1)
    decode_threads: int | None = Field(default=None, ge=1)
    # How long a thread that wants the GIL waits before forcing the holder to let go. Python's
    # 5 ms default makes the forward worker wait behind a busy event loop every time it retakes
    # the GIL between torch calls; 0.2 ms measured up to 15% more cnn requests/s here.
    gil_switch_interval_ms: float = Field(default=0.2, gt=0, le=100)
    # How many container objects Python allocates (net) before a young-generation collection.
    # At Python's 700, 32 requests in flight set it off every ~8 cnn requests (~45 µs each,
    # with the full collections it leads to: ~12 µs of every request); at 2,000 the event
    # loop spent ~13% less per cnn predict, and larger values measured slower again.
    gc_gen0_threshold: int = Field(default=2000, ge=100, le=1_000_000)
    # The control store every process of the service shares (app/serving/store). Unset:
    # ``serve`` uses a SQLite file of its own run under <data_dir>/state, an in-process app
    # keeps it in memory; set it to share across containers (sqlite:////volume/state.sqlite3)
    # or hosts (redis://host:6379/0).
    state_url: str | None = None
    heartbeat_s: float = Field(default=1.0, gt=0, le=60)
    process_timeout_s: float = Field(default=5.0, gt=0, le=600)
    admin_wait_s: float = Field(default=30.0, gt=0, le=3600)
    job_lease_s: float = Field(default=10.0, gt=0, le=3600)

    @field_validator("process_timeout_s", "job_lease_s")
    @classmethod
    def _longer_than_a_heartbeat(cls, value: float, info: ValidationInfo) -> float:
        heartbeat = info.data.get("heartbeat_s", 1.0)
        if value < 2 * heartbeat:
            raise ValueError(f"must be at least two heartbeats (2 x {heartbeat} s)")
        return value

    @model_validator(mode="after")
    def _tls_files_together(self) -> Settings:
        if (self.grpc_tls_cert_file is None) != (self.grpc_tls_key_file is None):
            raise ValueError(
                "TORCHGATE_GRPC_TLS_CERT_FILE and TORCHGATE_GRPC_TLS_KEY_FILE go together"
            )
        if self.grpc_tls_client_ca_file is not None and self.grpc_tls_cert_file is None:
            raise ValueError("TORCHGATE_GRPC_TLS_CLIENT_CA_FILE needs a server certificate too")
        return self

    @field_validator("models", mode="before")
    @classmethod
    def _split_models(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value

    @field_validator("models")
    @classmethod
    def _known_models(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in value if name not in ALL_MODELS]
        if unknown:
            raise ValueError(f"unknown model(s) {unknown}; choose from {list(ALL_MODELS)}")
        return tuple(dict.fromkeys(value))

    @field_validator("max_batch_size", "max_batch_delay_ms", mode="before")
    @classmethod
    def _per_model(cls, value: object) -> object:
        return _parse_per_model(value)

    @field_validator("device")
    @classmethod
    def _device_syntax(cls, value: str) -> str:
        value = value.strip().lower()
        if value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
            return value
        raise ValueError("device must be auto, cpu, cuda or cuda:N")

    @property
    def body_deadline_s(self) -> float:
        """The whole body's deadline: set, or the largest body at the slowest allowed rate."""
        if self.body_timeout_s is not None:
            return self.body_timeout_s
        return max(30.0, self.max_upload_bytes / self.min_upload_bytes_per_s)

    def torch_threads_per_worker(self, cores: int, cuda: bool = False) -> int:
        """Intra-op threads: on the CPU each worker's share of the cores (big models are
        compute-bound and use them all; small ones scale with workers of one thread each).
        On CUDA one: the GPU does the math, and the CPU's torch work is the decode pool's
        per-image normalisation, where every decode thread would otherwise fan out into an
        OpenMP team of its own (4 decode threads x 16 OpenMP threads on a 16-core host)."""
        if self.torch_threads:
            return self.torch_threads
        return 1 if cuda else max(1, cores // self.workers)

    def decode_threads_per_worker(self, cores: int, cuda: bool = False) -> int:
        """On the CPU a small decode pool (PIL releases the GIL, but the forward needs the
        cores). On CUDA decoding is the CPU's main work: each worker's share of the cores,
        less one for its event loop and one for its forward worker (14 on 16 cores)."""
        if self.decode_threads:
            return self.decode_threads
        share = max(1, cores // self.workers)
        return max(1, share - 2) if cuda else min(4, share)

    @property
    def compiled_graphs_dir(self) -> Path:
        return self.compiled_dir or self.data_dir / "compiled"

    def batch_size_for(self, model: str, default: int) -> int:
        """The model's batch limit: its own setting, else the global one, else the spec's."""
        return int(self.max_batch_size.get(model, self.max_batch_size.get("*", default)))

    def batch_delay_for(self, model: str, default: float) -> float:
        """The model's batching delay in milliseconds, resolved like ``batch_size_for``."""
        return float(self.max_batch_delay_ms.get(model, self.max_batch_delay_ms.get("*", default)))

    # -- supervision of the control-store sync and of jobs (app/serving/sync.py, jobs.py) --
    # No completed sync tick for this long: liveness fails (/healthz 503) and the process
    # leaves the live set, so the orchestrator restarts it. More than one apply of the
    # largest model (a reinitialize of vgg16 on the CPU takes seconds); two heartbeats at least.
    sync_stall_s: float = Field(default=10.0, gt=0, le=3600)
    # A job whose done counter and forwards stood still this long loses its lease and ends
    # failed, freeing its model's slot:
    job_progress_timeout_s: float = Field(default=120.0, gt=0, le=86400)
    # One forward of a job (waiting for the device worker included) may take this long:
    job_forward_timeout_s: float = Field(default=60.0, gt=0, le=86400)

    @field_validator("sync_stall_s")
    @classmethod
    def _stall_longer_than_a_heartbeat(cls, value: float, info: ValidationInfo) -> float:
        return cls._longer_than_a_heartbeat(value, info)

    # -- secrets (docs/security.md#secrets: what each accepts, and what is refused) ------------
    # A file holding the admin token (e.g. a Kubernetes Secret mount), instead of
    # TORCHGATE_ADMIN_TOKEN; where no file is there yet, `serve` writes the token it generates
    # into a new one, readable by its user only, instead of logging it.
    admin_token_file: Path | None = None
    # The control store's Redis password (AUTH), kept out of TORCHGATE_STATE_URL; an ACL user
    # goes in the URL (redis://torchgate@host:6379/0). A password in the URL too is refused.
    state_password: SecretStr | None = None
    # A rediss:// (TLS) store: the CA that signed the server's certificate (unset: the
    # system's CAs), and a client certificate and key for mutual TLS.
    state_tls_ca_file: Path | None = None
    state_tls_cert_file: Path | None = None
    state_tls_key_file: Path | None = None
