"""Mutual TLS to a ``tcp://`` engine: the three PEM files, and errors a person can act on.

The paths are stored with the build server (``server add --tls-ca --tls-cert --tls-key``) and
read when a call is made, so every worker host needs the files at the same paths; no key is
ever copied or put into the database. The docker CLI gets them as ``--tlsverify --tlscacert
--tlscert --tlskey`` (the same as ``DOCKER_TLS_VERIFY`` + ``DOCKER_CERT_PATH``, without
copying the key into a certificate directory), the docker SDK as a ``TLSConfig``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from deployq.errors import ConfigError

if TYPE_CHECKING:
    import docker.tls

    from deployq.models import BuildServer


@dataclass(frozen=True)
class EngineTLS:
    """The CA that signed the engine's certificate, and this client's certificate and key."""

    ca: str
    cert: str
    key: str

    @classmethod
    def from_options(
        cls, docker_host: str, ca: str | None, cert: str | None, key: str | None
    ) -> EngineTLS | None:
        """None without TLS options; ConfigError when they are incomplete or do not fit."""
        given = [v for v in (ca, cert, key) if v]
        if not given:
            return None
        if len(given) != 3 or ca is None or cert is None or key is None:
            raise ConfigError("mutual TLS needs all three of --tls-ca, --tls-cert and --tls-key")
        if not docker_host.startswith("tcp://"):
            raise ConfigError(
                f"TLS files are for tcp:// engines, not {docker_host}: remove --tls-* or use "
                "--docker-host tcp://HOST:2376"
            )
        tls = cls(os.path.abspath(ca), os.path.abspath(cert), os.path.abspath(key))
        tls.check_files()
        return tls

    def check_files(self) -> None:
        """Raise ConfigError naming the first file that cannot be read."""
        files = (("--tls-ca", self.ca), ("--tls-cert", self.cert), ("--tls-key", self.key))
        for option, path in files:
            if not os.access(path, os.R_OK) or not os.path.isfile(path):
                raise ConfigError(
                    f"{option} {path} is not a readable file on this host: copy it there "
                    "(every worker host needs it at the same path)"
                )

    def cli_flags(self) -> list[str]:
        """Global docker CLI flags that make it verify the engine and present our cert."""
        return [
            "--tlsverify",
            f"--tlscacert={self.ca}",
            f"--tlscert={self.cert}",
            f"--tlskey={self.key}",
        ]

    def sdk_config(self) -> docker.tls.TLSConfig:
        """The docker SDK's TLSConfig: verify the engine against ``ca``, present cert/key."""
        import docker.errors
        import docker.tls

        self.check_files()
        try:
            return docker.tls.TLSConfig(
                client_cert=(self.cert, self.key), ca_cert=self.ca, verify=self.ca
            )
        except docker.errors.TLSParameterError as exc:
            raise ConfigError(f"TLS files refused: {exc}") from exc


def server_tls(server: BuildServer) -> EngineTLS | None:
    """The TLS files stored with ``server`` (None for an engine reached without TLS)."""
    if server.tls_ca and server.tls_cert and server.tls_key:
        return EngineTLS(server.tls_ca, server.tls_cert, server.tls_key)
    return None


#: (pattern in the error text of the CLI or of Python's ssl, what to tell the person)
_TLS_ERRORS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"KEY_VALUES_MISMATCH|private key does not match public key", re.I),
        "the client key {key} does not belong to the client certificate {cert}: give the "
        "key that was made with that certificate",
    ),
    (
        re.compile(
            r"certificate signed by unknown authority|CERTIFICATE_VERIFY_FAILED"
            r"|unable to get local issuer|self[- ]signed certificate",
            re.I,
        ),
        "the engine's certificate is not signed by the CA in {ca}: give the CA that signed "
        "the daemon's --tlscert",
    ),
    (
        # TLS 1.3: Python sees the engine hang up on the client certificate as an EOF
        re.compile(
            r"bad certificate|unknown ca|certificate required|ALERT_UNKNOWN_CA|SSLEOFError",
            re.I,
        ),
        "the engine refused the client certificate {cert}: it must be signed by the CA the "
        "daemon trusts (its --tlscacert)",
    ),
    (
        re.compile(r"doesn't match|not valid for|IP address mismatch|hostname mismatch", re.I),
        "the engine's certificate does not name the host of --docker-host: use a name or "
        "address in its subjectAltName",
    ),
    (
        re.compile(r"HTTP request to an HTTPS server", re.I),
        "the engine requires TLS: add the server again with --tls-ca, --tls-cert and --tls-key",
    ),
    (
        re.compile(r"PEM|no certificates|failed to find any PEM|NO_START_LINE", re.I),
        "a TLS file is not PEM ({ca}, {cert}, {key}): give PEM files",
    ),
]


def tls_problem(text: str, tls: EngineTLS | None) -> str | None:
    """What a TLS failure in ``text`` means, in one sentence; None when it is not one."""
    for pattern, message in _TLS_ERRORS:
        if pattern.search(text):
            if tls is None:
                if "HTTPS" not in pattern.pattern:
                    continue
                return message
            return "TLS: " + message.format(ca=tls.ca, cert=tls.cert, key=tls.key)
    return None
