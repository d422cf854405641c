"""The Defender group: which backend, the app's credential, and the cloud's endpoints with their overrides."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from bot.config import variables as v
from bot.config.kinds import ConfigError, Reader, Secret
from bot.defender.clouds import Cloud, is_well_known_authority


class Backend(enum.Enum):
    API = "api"
    SIMULATOR = "simulator"


class DataApi(enum.Enum):
    """Which Microsoft API the alerts come from (the simulator speaks both)."""

    MDE = "mde"  # the Defender for Endpoint API, retired on 1 Feb 2027
    GRAPH = "graph"  # the Microsoft Graph security API


@dataclass(frozen=True, slots=True)
class CertificateCredential:
    """A PEM private key and the SHA-1 thumbprint of its certificate, as MSAL expects them."""

    private_key: Secret
    thumbprint: str

    def for_msal(self) -> dict[str, str]:
        return {"private_key": self.private_key.reveal(), "thumbprint": self.thumbprint}


@dataclass(frozen=True, slots=True)
class DefenderSettings:
    backend: Backend
    # True when no Defender variable was set at all and the simulator was picked for that reason.
    defaulted: bool
    cloud: Cloud
    tenant_id: str | None
    client_id: str | None
    client_secret: Secret | None
    certificate: CertificateCredential | None
    api_url: str
    authority_url: str  # login host with the tenant appended
    instance_discovery: bool
    scope: str
    portal_url: str
    timeout: float  # read timeout of one request
    api: DataApi
    graph_url: str  # scheme and host; the client adds /v1.0/…
    graph_scope: str
    graph_backfill: timedelta  # how far back the Graph alert mirror reads at start-up


def load_defender(read: Reader) -> DefenderSettings:
    # The simulator is the default only where nothing points at a real tenant.
    defaulted = read.raw(v.BACKEND) is None and not any(read.raw(variable) for variable in v.CONNECTION)
    chosen: str | None = read.get(v.BACKEND)
    backend = Backend(chosen or ("simulator" if defaulted else "api"))
    cloud = Cloud(read.value(v.CLOUD))
    endpoints = cloud.endpoints
    tenant_id, client_id, client_secret, certificate = _credential(read, backend)
    authority_host = read.get(v.AUTHORITY_URL) or endpoints.authority_host
    scope = read.get(v.SCOPE) or endpoints.scope
    return DefenderSettings(
        backend=backend,
        defaulted=defaulted,
        cloud=cloud,
        tenant_id=tenant_id,
        client_id=client_id,
        client_secret=client_secret,
        certificate=certificate,
        api_url=read.get(v.API_URL) or endpoints.api_base,
        authority_url=f"{authority_host}/{tenant_id or 'common'}",
        instance_discovery=is_well_known_authority(authority_host),
        scope=scope,
        portal_url=endpoints.portal,
        timeout=read.value(v.TIMEOUT),
        api=DataApi(read.value(v.API)),
        graph_url=read.get(v.GRAPH_URL) or endpoints.graph_base,
        graph_scope=read.get(v.GRAPH_SCOPE) or endpoints.graph_scope,
        graph_backfill=timedelta(days=read.value(v.GRAPH_BACKFILL_DAYS)),
    )


def _credential(
    read: Reader, backend: Backend
) -> tuple[str | None, str | None, Secret | None, CertificateCredential | None]:
    """Tenant, client, secret and certificate: required and checked for the API, passed over for the simulator."""
    if backend is Backend.SIMULATOR:  # a configured secret is dropped; the ids are kept as they are
        return read.raw(v.TENANT_ID), read.raw(v.CLIENT_ID), None, None
    if read.raw(v.TENANT_ID) is None:
        raise ConfigError(
            f"{v.TENANT_ID.name}: required (the Entra tenant id, a GUID) unless {v.BACKEND.name}=simulator"
        )
    tenant_id = read.get(v.TENANT_ID)
    if read.raw(v.CLIENT_ID) is None:
        raise ConfigError(f"{v.CLIENT_ID.name}: required (the app registration's client id, a GUID)")
    client_id = read.get(v.CLIENT_ID)
    secret = read.get(v.CLIENT_SECRET)
    certificate_path = read.get(v.CERTIFICATE_PATH)
    if secret and certificate_path:
        raise ConfigError(f"{v.CLIENT_SECRET.name}: set either it or {v.CERTIFICATE_PATH.name}, not both")
    if not secret and not certificate_path:
        raise ConfigError(f"{v.CLIENT_SECRET.name}: required (or {v.CERTIFICATE_PATH.name} for a certificate)")
    certificate = load_certificate(certificate_path) if certificate_path else None
    return tenant_id, client_id, secret, certificate


def load_certificate(path_text: str) -> CertificateCredential:
    """Read a PEM file holding the private key and its certificate; compute the thumbprint."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    name = v.CERTIFICATE_PATH.name
    try:
        data = Path(path_text).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path_text!r} ({exc.strerror})") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"{name}: {path_text!r} holds no unencrypted PEM private key") from None
    try:
        certificate = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise ConfigError(f"{name}: {path_text!r} holds no PEM certificate") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.PEM, public) != certificate.public_key().public_bytes(
        serialization.Encoding.PEM, public
    ):
        raise ConfigError(f"{name}: the private key in {path_text!r} does not belong to its certificate")
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    # Entra identifies the certificate by its SHA-1 thumbprint (x5t): a protocol name, not a security choice.
    thumbprint = certificate.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303
    return CertificateCredential(Secret(pem.decode()), thumbprint)


def check_server_backend(defender: DefenderSettings) -> None:
    """The Slack entry points serve the simulator only when asked to: otherwise analysts would be told that real
    hosts do not exist. `ConfigError` when no Defender variable was set at all."""
    if defender.defaulted:
        raise ConfigError(
            f"{v.BACKEND.name}: no Defender tenant is configured; set {v.TENANT_ID.name}, {v.CLIENT_ID.name} and "
            f"{v.CLIENT_SECRET.name}, or {v.BACKEND.name}=simulator to serve the built-in simulator"
        )
