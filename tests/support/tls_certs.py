"""Certificates made in the test: a test CA with server certificates, and a self-signed one."""

from __future__ import annotations

import datetime
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def server_context(cert_pem: bytes, key_pem: bytes, folder: Path, name: str) -> ssl.SSLContext:
    """A TLS server context presenting this certificate and key."""
    cert_file, key_file = folder / f"{name}.crt", folder / f"{name}.key"
    cert_file.write_bytes(cert_pem)
    key_file.write_bytes(key_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


def self_signed(name: str) -> tuple[bytes, bytes]:
    """A self-signed certificate for the DNS name `name`, and its key, as PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@dataclass
class LocalPKI:
    """A test CA (its PEM file in `ca_file`) and server contexts made from it or without it."""

    folder: Path
    ca: trustme.CA
    ca_file: Path

    @classmethod
    def create(cls, folder: Path) -> LocalPKI:
        """A fresh CA whose certificate is written to folder/ca.pem."""
        folder.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA(organization_name="contact_site test CA")
        ca_file = folder / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        return cls(folder, ca, ca_file)

    def issued(self, *names: str) -> ssl.SSLContext:
        """A server context with a certificate from the test CA for these names (IPs too)."""
        leaf = self.ca.issue_cert(*names)
        chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
        return server_context(chain, leaf.private_key_pem.bytes(), self.folder,
                              f"issued-{'-'.join(names)}")

    def self_signed(self, name: str) -> ssl.SSLContext:
        """A server context with a self-signed certificate for `name`."""
        cert, key = self_signed(name)
        return server_context(cert, key, self.folder, f"self-{name}")
