"""`manage.py makecert`: a self-signed TLS certificate for serving the pages over HTTPS on a LAN."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import socket
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.core.management.base import BaseCommand, CommandError, CommandParser

logger = logging.getLogger(__name__)


def local_addresses() -> list[str]:
    """This machine's LAN IPv4 address (best effort) plus the loopback ones."""
    found = {"127.0.0.1", "::1"}
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            found.add(sock.getsockname()[0])
    except OSError:
        pass
    return sorted(found)


def make_certificate(names: list[str], addresses: list[str], days: int) -> tuple[bytes, bytes]:
    """A self-signed certificate (PEM) valid for ``names`` and ``addresses``, and its private key (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else addresses[0])])
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


class Command(BaseCommand):
    """Write cert.pem and key.pem for `daphne -e ssl:8443:privateKey=key.pem:certKey=cert.pem`."""

    help = "Create a self-signed TLS certificate (cert.pem, key.pem) for HTTPS on a LAN."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dir", default="certs", help="output directory (default: certs/)")
        parser.add_argument("--host", action="append", default=[], help="extra DNS name (repeatable)")
        parser.add_argument("--ip", action="append", default=[], help="extra IP address (repeatable)")
        parser.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
        parser.add_argument("--force", action="store_true", help="overwrite existing files")

    def handle(self, *args: Any, **options: Any) -> None:
        directory = Path(options["dir"])
        cert_path, key_path = directory / "cert.pem", directory / "key.pem"
        if not options["force"] and (cert_path.exists() or key_path.exists()):
            raise CommandError(f"{cert_path} or {key_path} exists; use --force to replace them")
        names = list(dict.fromkeys(["localhost", socket.gethostname(), *options["host"]]))
        try:
            addresses = list(dict.fromkeys([*local_addresses(), *options["ip"]]))
            for address in addresses:
                ipaddress.ip_address(address)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        cert_pem, key_pem = make_certificate(names, addresses, options["days"])
        directory.mkdir(parents=True, exist_ok=True)
        key_path.write_bytes(key_pem)
        key_path.chmod(0o600)
        cert_path.write_bytes(cert_pem)
        self.stdout.write(f"wrote {cert_path} and {key_path} for {', '.join(names + addresses)}")
        self.stdout.write(
            f"serve with: daphne -e ssl:8443:privateKey={key_path}:certKey={cert_path} conference.asgi:application"
        )
