"""HTTP/2 by hand (the ``h2`` package), for what no gRPC client sends: a call without a message,
bodies that never end, streams reset as soon as they open, pings too often."""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.errors
import h2.events


@dataclass
class Stream:
    """What came back on one stream: its status (grpc-status), or how it was reset."""

    headers: dict[str, str] = field(default_factory=dict)
    trailers: dict[str, str] = field(default_factory=dict)
    reset: int | None = None
    ended: bool = False

    @property
    def status(self) -> int | None:
        """grpc-status, from the trailers or a trailers-only answer."""
        value = self.trailers.get("grpc-status", self.headers.get("grpc-status"))
        return None if value is None else int(value)


def grpc_frame(message: bytes, declared: int | None = None) -> bytes:
    """A gRPC length-prefixed message (uncompressed); ``declared`` may claim another length."""
    return struct.pack(">?I", False, len(message) if declared is None else declared) + message


class RawH2:
    """One plaintext HTTP/2 connection to a gRPC server, driven frame by frame."""

    def __init__(self, target: str, timeout: float = 10.0) -> None:
        host, port = target.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=config)
        self.streams: dict[int, Stream] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.closed = False
        self.conn.initiate_connection()
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.closed:
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed = True

    def open(self, path: str, end_stream: bool = False, flush: bool = True) -> int:
        """A new call's HEADERS (END_STREAM when ``end_stream``: a call without a message),
        sent now unless ``flush`` is false (then with the next frames sent)."""
        stream_id = self.conn.get_next_available_stream_id()
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
        self.conn.send_headers(stream_id, headers, end_stream=end_stream)
        self.streams[stream_id] = Stream()
        if flush:
            self.flush()
        return stream_id

    def send(self, stream_id: int, data: bytes, end_stream: bool = False) -> int:
        """As much of ``data`` as flow control lets through now; how much that was."""
        size = min(len(data), self.conn.local_flow_control_window(stream_id))
        chunk = self.conn.max_outbound_frame_size
        for start in range(0, size, chunk):
            self.conn.send_data(stream_id, data[start : min(start + chunk, size)])
        if end_stream and size == len(data):
            self.conn.end_stream(stream_id)
        self.flush()
        return size

    def reset(self, stream_id: int) -> None:
        self.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
        self.flush()

    def ping(self) -> None:
        self.conn.ping(time.monotonic_ns().to_bytes(8, "big"))
        self.flush()

    def receive(self, seconds: float) -> None:
        """Read and handle frames for up to ``seconds`` (less if the connection closes)."""
        deadline = time.monotonic() + seconds
        while not self.closed and (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return
            except OSError:
                data = b""
            if not data:
                self.closed = True
                return
            for event in self.conn.receive_data(data):
                self._handle(event)
            self.flush()

    def wait(self, stream_id: int, seconds: float) -> Stream:
        """Until the stream ends or is reset, or ``seconds`` pass."""
        deadline = time.monotonic() + seconds
        stream = self.streams[stream_id]
        while not (stream.ended or stream.reset is not None or self.closed):
            if time.monotonic() >= deadline:
                break
            self.receive(min(0.05, deadline - time.monotonic()))
        return stream

    def _handle(self, event: h2.events.Event) -> None:
        stream = self.streams.get(getattr(event, "stream_id", None) or 0)
        if isinstance(event, h2.events.ResponseReceived) and stream is not None:
            stream.headers = dict(event.headers)
        elif isinstance(event, h2.events.TrailersReceived) and stream is not None:
            stream.trailers = dict(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded) and stream is not None:
            stream.ended = True
        elif isinstance(event, h2.events.StreamReset) and stream is not None:
            stream.reset = int(event.error_code)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event

    def close(self) -> None:
        self.closed = True
        self.sock.close()
