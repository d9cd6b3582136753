"""grpcio's server options and credentials, from the settings.

What bounds the memory that clients can make the process hold (all per process):
- a message: TORCHGATE_MAX_UPLOAD_BYTES, refused (RESOURCE_EXHAUSTED) past it;
- calls in progress: TORCHGATE_GRPC_MAX_CONCURRENT_RPCS (grpc.aio's ``maximum_concurrent_rpcs``;
  beyond, RESOURCE_EXHAUSTED at once; a health Watch counts as one while it lasts). grpc's core
  opens a call's flow-control window to the size its message announces once the call reads,
  so unfinished uploads hold at most this many messages; ``messages.py`` ends those that take
  longer than TORCHGATE_GRPC_MESSAGE_TIMEOUT_S, and takes received ones from the upload budget;
- a stream not read yet: the initial window, ``grpc.http2.lookahead_bytes``; with BDP probing
  off it stays there (BDP grows it on high-latency links for streaming, which no method here
  does: a unary read opens its window to the message anyway);
- streams per connection (TORCHGATE_GRPC_MAX_CONCURRENT_STREAMS; keep it well above the calls a
  client keeps in flight on one connection, see ``overload_protection`` below, or some are
  refused UNAVAILABLE), connections (TORCHGATE_GRPC_MAX_CONNECTIONS), and connections that never
  finish their handshake (..._HANDSHAKE_TIMEOUT_S), sit idle (..._MAX_CONNECTION_IDLE_S) or are
  dead (keepalive).
Not bounded by grpcio from Python: a connection's own buffers beyond its streams' windows (no
resource quota), and one client's share of the calls in progress.
"""

from __future__ import annotations

from pathlib import Path

import grpc

from app.config import Settings
from app.errors import ConfigurationError

LOOKAHEAD_BYTES = 64 * 1024  # grpc's default initial stream window, made explicit


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def server_options(settings: Settings) -> list[tuple[str, int]]:
    """The channel arguments of the gRPC server."""
    limit = settings.max_upload_bytes  # the same bound as an HTTP body
    options = [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        ("grpc.so_reuseport", int(settings.workers > 1)),
        ("grpc.max_concurrent_streams", settings.grpc_max_concurrent_streams),
        # grpc's default, made explicit: a stream counts against that limit until its call is
        # freed, not only while it is open, so a client resetting streams as fast as it opens
        # them (Rapid Reset) is refused (REFUSED_STREAM) instead of crowding out others' calls
        ("grpc.http.overload_protection", 1),
        ("grpc.max_allowed_incoming_connections", settings.grpc_max_connections),
        ("grpc.server_handshake_timeout_ms", _ms(settings.grpc_handshake_timeout_s)),
        ("grpc.http2.lookahead_bytes", LOOKAHEAD_BYTES),
        ("grpc.http2.bdp_probe", 0),
        ("grpc.keepalive_time_ms", _ms(settings.grpc_keepalive_time_s)),
        ("grpc.keepalive_timeout_ms", _ms(settings.grpc_keepalive_timeout_s)),
        (
            "grpc.http2.min_ping_interval_without_data_ms",
            _ms(settings.grpc_min_ping_interval_s),
        ),
        ("grpc.keepalive_permit_without_calls", int(settings.grpc_keepalive_permit_without_calls)),
        ("grpc.http2.max_pings_without_data", settings.grpc_max_pings_without_data),
    ]
    if settings.grpc_max_connection_idle_s:
        options.append(("grpc.max_connection_idle_ms", _ms(settings.grpc_max_connection_idle_s)))
    if settings.grpc_max_connection_age_s:
        options.append(("grpc.max_connection_age_ms", _ms(settings.grpc_max_connection_age_s)))
        grace = _ms(settings.grpc_max_connection_age_grace_s)
        options.append(("grpc.max_connection_age_grace_ms", grace))
    return options


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the gRPC {what} {path} ({exc.strerror}): fix the path in its "
            "TORCHGATE_GRPC_TLS_* setting, or unset them all to serve plaintext."
        ) from exc


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials (mutual when a client CA is set), or None for plaintext."""
    if settings.grpc_tls_cert_file is None or settings.grpc_tls_key_file is None:
        return None
    pair = (
        _read(settings.grpc_tls_key_file, "private key"),
        _read(settings.grpc_tls_cert_file, "certificate"),
    )
    client_ca = settings.grpc_tls_client_ca_file
    return grpc.ssl_server_credentials(
        [pair],
        root_certificates=_read(client_ca, "client CA") if client_ca else None,
        require_client_auth=client_ca is not None,
    )
