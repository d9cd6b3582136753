"""A throwaway PKI for TLS tests: a self-signed CA, and a server and a client certificate it
signed (for localhost and 127.0.0.1), as PEM files."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[str, ec.EllipticCurvePrivateKey]
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer[0]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
    )
    if subject == issuer[0]:  # the CA
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
    else:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), False)
    return builder.sign(issuer[1], hashes.SHA256())


def _pem(item: x509.Certificate | ec.EllipticCurvePrivateKey) -> bytes:
    if isinstance(item, x509.Certificate):
        return item.public_bytes(serialization.Encoding.PEM)
    return item.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_pki(folder: Path) -> dict[str, Path]:
    """``ca``, ``server``, ``server_key``, ``client``, ``client_key`` (and ``ca_key``) in
    ``folder``."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = ("torchgate test CA", ca_key)
    files = {"ca": _certificate(ca[0], ca_key, ca), "ca_key": ca_key}
    for role in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        files[role], files[f"{role}_key"] = _certificate(role, key, ca), key
    paths = {}
    for name, item in files.items():
        paths[name] = folder / f"{name}.pem"
        paths[name].write_bytes(_pem(item))
    return paths
