"""Start-up configuration: `load_settings` against the README's Configuration section.

Every call passes an explicit env mapping (or one `read_environment` merged with a tmp_path `.env`), so
neither the real environment nor a stray `.env` in the working directory can leak into a test.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import traceback
from operator import attrgetter
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from bot.config import Backend, CertificateCredential, ConfigError, Secret, Settings, load_settings, read_environment
from bot.defender.clouds import Cloud
from tests.doubles import secrets as fake_secrets

TENANT = "11111111-2222-3333-4444-555555555555"
CLIENT = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
SECRET = fake_secrets.DEFENDER_CLIENT_SECRET
API_ENV = {"DEFENDER_TENANT_ID": TENANT, "DEFENDER_CLIENT_ID": CLIENT, "DEFENDER_CLIENT_SECRET": SECRET}
CERT_VAR = "DEFENDER_CLIENT_CERTIFICATE_PATH"


def load(env: dict[str, str]) -> Settings:
    return load_settings(env)


def config_error(env: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(env)
    return info.value


# -- backend selection --------------------------------------------------------------------------------------------


def test_no_defender_variables_defaults_to_the_simulator() -> None:
    settings = load({})
    assert settings.defender.backend is Backend.SIMULATOR
    assert settings.defender.defaulted is True
    assert settings.defender.client_secret is None
    assert settings.defender.certificate is None


def test_unrelated_variables_do_not_switch_away_from_the_simulator() -> None:
    settings = load({"PATH": "/usr/bin", "HOME": "/root", "SLACK_BOT_TOKEN": "xoxb-1"})
    assert settings.defender.backend is Backend.SIMULATOR
    assert settings.defender.defaulted is True


@pytest.mark.parametrize("variable", ["DEFENDER_CLOUD", "DEFENDER_API_URL", "DEFENDER_AUTHORITY_URL", "DEFENDER_SCOPE"])
def test_a_connection_variable_alone_means_the_api_backend(variable: str) -> None:
    values = {"DEFENDER_CLOUD": "gcc-high", "DEFENDER_SCOPE": "https://api.example.test/.default"}
    error = config_error({variable: values.get(variable, "https://api.example.test")})
    assert str(error).startswith("DEFENDER_TENANT_ID:")


def test_tuning_variables_alone_keep_the_simulator() -> None:
    settings = load({"DEFENDER_CALLS_PER_MINUTE": "50", "DEFENDER_TIMEOUT_SECONDS": "5"})
    assert settings.defender.backend is Backend.SIMULATOR
    assert settings.defender.defaulted is True
    assert settings.budget.per_minute == 50


@pytest.mark.parametrize("value", ["simulator", "SIMULATOR", " simulator "])
def test_explicit_simulator_backend_is_not_defaulted(value: str) -> None:
    settings = load({"DEFENDER_BACKEND": value})
    assert settings.defender.backend is Backend.SIMULATOR
    assert settings.defender.defaulted is False


def test_simulator_backend_ignores_and_drops_a_configured_secret() -> None:
    settings = load({**API_ENV, "DEFENDER_BACKEND": "simulator"})
    assert settings.defender.backend is Backend.SIMULATOR
    assert settings.defender.defaulted is False
    assert settings.defender.client_secret is None


def test_full_api_configuration() -> None:
    settings = load(API_ENV)
    assert settings.defender.backend is Backend.API
    assert settings.defender.defaulted is False
    assert settings.defender.tenant_id == TENANT
    assert settings.defender.client_id == CLIENT
    assert settings.defender.client_secret == Secret(SECRET)
    assert settings.defender.client_secret is not None
    assert settings.defender.client_secret.reveal() == SECRET
    assert settings.defender.certificate is None
    assert settings.defender.cloud is Cloud.COMMERCIAL


def test_explicit_api_backend_with_full_configuration() -> None:
    settings = load({**API_ENV, "DEFENDER_BACKEND": "api"})
    assert settings.defender.backend is Backend.API
    assert settings.defender.defaulted is False


def test_values_are_stripped() -> None:
    settings = load(
        {
            "DEFENDER_TENANT_ID": f"  {TENANT}\n",
            "DEFENDER_CLIENT_ID": f"\t{CLIENT} ",
            "DEFENDER_CLIENT_SECRET": f" {SECRET} ",
        }
    )
    assert settings.defender.tenant_id == TENANT
    assert settings.defender.client_id == CLIENT
    assert settings.defender.client_secret == Secret(SECRET)


def test_tenant_may_be_a_primary_domain() -> None:
    settings = load({**API_ENV, "DEFENDER_TENANT_ID": "contoso.onmicrosoft.com"})
    assert settings.defender.tenant_id == "contoso.onmicrosoft.com"
    assert settings.defender.authority_url == "https://login.microsoftonline.com/contoso.onmicrosoft.com"


def test_unknown_backend_is_rejected() -> None:
    error = config_error({**API_ENV, "DEFENDER_BACKEND": "production"})
    assert str(error).startswith("DEFENDER_BACKEND:")
    assert "api" in str(error)
    assert "simulator" in str(error)


@pytest.mark.parametrize("missing", ["DEFENDER_TENANT_ID", "DEFENDER_CLIENT_ID"])
def test_api_backend_requires_tenant_and_client(missing: str) -> None:
    env = {name: value for name, value in API_ENV.items() if name != missing}
    error = config_error(env)
    assert str(error).startswith(f"{missing}:")


@pytest.mark.parametrize("blank", ["", "   "])
def test_blank_values_count_as_missing(blank: str) -> None:
    error = config_error({**API_ENV, "DEFENDER_TENANT_ID": blank})
    assert str(error).startswith("DEFENDER_TENANT_ID:")


def test_api_backend_requires_a_secret_or_a_certificate() -> None:
    env = {"DEFENDER_TENANT_ID": TENANT, "DEFENDER_CLIENT_ID": CLIENT}
    error = config_error(env)
    assert str(error).startswith("DEFENDER_CLIENT_SECRET:")
    assert CERT_VAR in str(error)


def test_explicit_api_backend_with_nothing_else_names_the_tenant() -> None:
    error = config_error({"DEFENDER_BACKEND": "api"})
    assert str(error).startswith("DEFENDER_TENANT_ID:")


@pytest.mark.parametrize(
    "only",
    [
        {"DEFENDER_CLIENT_ID": CLIENT},
        {"DEFENDER_CLIENT_SECRET": SECRET},
        {CERT_VAR: "/nonexistent/cert.pem"},
    ],
)
def test_partial_configuration_means_api_and_names_the_tenant(only: dict[str, str]) -> None:
    error = config_error(only)
    assert str(error).startswith("DEFENDER_TENANT_ID:")


@pytest.mark.parametrize(
    "tenant",
    [
        "not-a-guid",
        "11111111-2222-3333-4444-55555555555",  # one digit short
        "11111111-2222-3333-4444-5555555555555",  # one digit too many
        "1111111g-2222-3333-4444-555555555555",  # not hex
        "{11111111-2222-3333-4444-555555555555}",
        "https://login.microsoftonline.com/contoso.com",
        "contoso",
    ],
)
def test_malformed_tenant_is_rejected(tenant: str) -> None:
    error = config_error({**API_ENV, "DEFENDER_TENANT_ID": tenant})
    assert str(error).startswith("DEFENDER_TENANT_ID:")


@pytest.mark.parametrize(
    "client",
    [
        "not-a-guid",
        "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeee",
        "aaaaaaaabbbbccccddddeeeeeeeeeeee",
        "zzzzzzzz-bbbb-cccc-dddd-eeeeeeeeeeee",
        "contoso.onmicrosoft.com",  # a domain is fine for the tenant, never for the client id
    ],
)
def test_malformed_client_id_is_rejected(client: str) -> None:
    error = config_error({**API_ENV, "DEFENDER_CLIENT_ID": client})
    assert str(error).startswith("DEFENDER_CLIENT_ID:")


def test_upper_case_guids_are_accepted() -> None:
    settings = load({**API_ENV, "DEFENDER_CLIENT_ID": CLIENT.upper()})
    assert settings.defender.client_id == CLIENT.upper()


def test_secret_and_certificate_together_are_rejected(tmp_path: Path) -> None:
    pem = tmp_path / "cert.pem"
    pem.write_bytes(_KEY_PEM + _CERT_PEM)
    error = config_error({**API_ENV, CERT_VAR: str(pem)})
    message = str(error)
    assert message.split(":", 1)[0] in ("DEFENDER_CLIENT_SECRET", CERT_VAR)
    assert "DEFENDER_CLIENT_SECRET" in message
    assert CERT_VAR in message
    assert SECRET not in message


# -- clouds --------------------------------------------------------------------------------------------------------

CLOUD_TABLE = [
    (
        "commercial",
        "https://login.microsoftonline.com",
        "https://api.security.microsoft.com",
        "https://api.securitycenter.microsoft.com/.default",
        "https://security.microsoft.com",
    ),
    (
        "gcc",
        "https://login.microsoftonline.com",
        "https://api-gcc.securitycenter.microsoft.us",
        "https://api-gcc.securitycenter.microsoft.us/.default",
        "https://security.microsoft.com",
    ),
    (
        "gcc-high",
        "https://login.microsoftonline.us",
        "https://api-gov.securitycenter.microsoft.us",
        "https://api-gov.securitycenter.microsoft.us/.default",
        "https://security.microsoft.us",
    ),
    (
        "dod",
        "https://login.microsoftonline.us",
        "https://api-gov.securitycenter.microsoft.us",
        "https://api-gov.securitycenter.microsoft.us/.default",
        "https://security.apps.mil",
    ),
]


@pytest.mark.parametrize(("cloud", "authority", "api", "scope", "portal"), CLOUD_TABLE)
def test_each_cloud_matches_the_readme_table(cloud: str, authority: str, api: str, scope: str, portal: str) -> None:
    settings = load({**API_ENV, "DEFENDER_CLOUD": cloud})
    assert settings.defender.cloud is Cloud(cloud)
    assert settings.defender.authority_url == f"{authority}/{TENANT}"
    assert settings.defender.api_url == api
    assert settings.defender.scope == scope
    assert settings.defender.portal_url == portal
    assert settings.defender.instance_discovery is True


def test_default_cloud_is_commercial() -> None:
    settings = load(API_ENV)
    assert settings.defender.cloud is Cloud.COMMERCIAL
    assert settings.defender.authority_url == f"https://login.microsoftonline.com/{TENANT}"
    assert settings.defender.api_url == "https://api.security.microsoft.com"
    assert settings.defender.scope == "https://api.securitycenter.microsoft.com/.default"
    assert settings.defender.portal_url == "https://security.microsoft.com"


@pytest.mark.parametrize("cloud", ["china", "azure", "gcc_high", "gcchigh", "usgov"])
def test_unknown_cloud_is_rejected_with_the_options(cloud: str) -> None:
    message = str(config_error({**API_ENV, "DEFENDER_CLOUD": cloud}))
    assert message.startswith("DEFENDER_CLOUD:")
    for option in ("commercial", "gcc", "gcc-high", "dod"):
        assert option in message
    assert SECRET not in message


# -- URL and scope overrides -------------------------------------------------------------------------------------


def test_api_url_override_keeps_the_cloud_defaults_otherwise() -> None:
    settings = load({**API_ENV, "DEFENDER_API_URL": "https://eu.api.security.microsoft.com"})
    assert settings.defender.api_url == "https://eu.api.security.microsoft.com"
    assert settings.defender.authority_url == f"https://login.microsoftonline.com/{TENANT}"
    assert settings.defender.scope == "https://api.securitycenter.microsoft.com/.default"


def test_api_url_override_wins_over_the_cloud() -> None:
    settings = load({**API_ENV, "DEFENDER_CLOUD": "gcc-high", "DEFENDER_API_URL": "https://api.example.test/base"})
    assert settings.defender.api_url == "https://api.example.test/base"
    assert settings.defender.portal_url == "https://security.microsoft.us"


def test_api_url_trailing_slash_is_dropped() -> None:
    settings = load({**API_ENV, "DEFENDER_API_URL": "https://eu.api.security.microsoft.com/"})
    assert settings.defender.api_url == "https://eu.api.security.microsoft.com"


@pytest.mark.parametrize(
    ("authority", "discovery"),
    [
        ("https://login.microsoftonline.com", True),
        ("https://login.microsoftonline.us", True),
        ("https://LOGIN.MicrosoftOnline.com", True),
        ("https://127.0.0.1:8443", False),
        ("https://login.example.test", False),
        ("https://login.microsoftonline.com.example.test", False),
        ("http://localhost:8080", False),
    ],
)
def test_authority_override_and_instance_discovery(authority: str, discovery: bool) -> None:
    settings = load({**API_ENV, "DEFENDER_AUTHORITY_URL": authority})
    assert settings.defender.authority_url == f"{authority}/{TENANT}"
    assert settings.defender.instance_discovery is discovery


def test_authority_override_trailing_slash_does_not_double() -> None:
    settings = load({**API_ENV, "DEFENDER_AUTHORITY_URL": "https://login.example.test/"})
    assert settings.defender.authority_url == f"https://login.example.test/{TENANT}"
    assert settings.defender.instance_discovery is False


def test_authority_override_wins_over_the_cloud() -> None:
    settings = load({**API_ENV, "DEFENDER_CLOUD": "dod", "DEFENDER_AUTHORITY_URL": "https://login.microsoftonline.com"})
    assert settings.defender.authority_url == f"https://login.microsoftonline.com/{TENANT}"
    assert settings.defender.api_url == "https://api-gov.securitycenter.microsoft.us"


@pytest.mark.parametrize("variable", ["DEFENDER_API_URL", "DEFENDER_AUTHORITY_URL"])
@pytest.mark.parametrize("url", ["http://localhost:8080", "http://127.0.0.1:8443", "http://127.0.0.1"])
def test_plain_http_is_allowed_for_loopback(variable: str, url: str) -> None:
    settings = load({**API_ENV, variable: url})
    value = settings.defender.api_url if variable == "DEFENDER_API_URL" else settings.defender.authority_url
    assert value.startswith(url)


@pytest.mark.parametrize("variable", ["DEFENDER_API_URL", "DEFENDER_AUTHORITY_URL"])
@pytest.mark.parametrize(
    "url",
    [
        "http://api.security.microsoft.com",
        "http://10.0.0.5:8080",
        "http://localhost.example.test",
        "https://api.example.test/?tenant=1",
        "https://api.example.test/path?x",
        "https://api.example.test/#fragment",
        "ftp://api.example.test",
        "api.security.microsoft.com",
        "https://",
        "not a url",
    ],
)
def test_insecure_or_malformed_urls_are_rejected(variable: str, url: str) -> None:
    message = str(config_error({**API_ENV, variable: url}))
    assert message.startswith(f"{variable}:")
    assert SECRET not in message


def test_url_overrides_are_validated_for_the_simulator_too() -> None:
    error = config_error({"DEFENDER_BACKEND": "simulator", "DEFENDER_API_URL": "http://api.example.test"})
    assert str(error).startswith("DEFENDER_API_URL:")


def test_scope_override() -> None:
    scope = "https://api.securitycenter.microsoft.com/.default"
    settings = load({**API_ENV, "DEFENDER_CLOUD": "gcc", "DEFENDER_SCOPE": scope})
    assert settings.defender.scope == scope
    assert settings.defender.api_url == "https://api-gcc.securitycenter.microsoft.us"


@pytest.mark.parametrize(
    "scope",
    [
        "http://api.securitycenter.microsoft.com/.default",
        "https://api.securitycenter.microsoft.com",
        "https://api.securitycenter.microsoft.com/",
        "https://api.securitycenter.microsoft.com/Alert.Read.All",
        "api://aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee/.default",
        ".default",
    ],
)
def test_bad_scope_is_rejected(scope: str) -> None:
    message = str(config_error({**API_ENV, "DEFENDER_SCOPE": scope}))
    assert message.startswith("DEFENDER_SCOPE:")
    assert SECRET not in message


# -- numeric settings and log level -------------------------------------------------------------------------------


def test_numeric_defaults() -> None:
    settings = load({})
    assert settings.defender.timeout == 20
    assert settings.cache.ttl == 60
    assert settings.cache.max_stale == 900
    assert settings.cache.maxsize == 2048
    assert settings.budget.per_minute == 100
    assert settings.budget.per_hour == 1500
    assert settings.budget.background_minute_share == 0.5
    assert settings.budget.background_hour_share == 0.8
    assert settings.logging.level is None  # each entry point picks its default


@pytest.mark.parametrize(
    ("variable", "text", "attribute", "expected"),
    [
        ("DEFENDER_TIMEOUT_SECONDS", "45", "defender.timeout", 45.0),
        ("DEFENDER_TIMEOUT_SECONDS", "2.5", "defender.timeout", 2.5),
        ("ALERT_CACHE_TTL_SECONDS", "0", "cache.ttl", 0.0),
        ("ALERT_CACHE_TTL_SECONDS", "300", "cache.ttl", 300.0),
        ("ALERT_CACHE_MAX_STALE_SECONDS", "3600", "cache.max_stale", 3600.0),
        ("ALERT_CACHE_MAXSIZE", "10", "cache.maxsize", 10),
        ("DEFENDER_CALLS_PER_MINUTE", "50", "budget.per_minute", 50),
        ("DEFENDER_CALLS_PER_MINUTE", " 60 ", "budget.per_minute", 60),
        ("DEFENDER_CALLS_PER_HOUR", "1000", "budget.per_hour", 1000),
        ("DEFENDER_BACKGROUND_MINUTE_SHARE", "0.25", "budget.background_minute_share", 0.25),
        ("DEFENDER_BACKGROUND_MINUTE_SHARE", "0", "budget.background_minute_share", 0.0),
        ("DEFENDER_BACKGROUND_HOUR_SHARE", "1", "budget.background_hour_share", 1.0),
        ("DEFENDER_BACKGROUND_HOUR_SHARE", "0.6", "budget.background_hour_share", 0.6),
    ],
)
def test_numeric_overrides(variable: str, text: str, attribute: str, expected: float) -> None:
    settings = load({variable: text})
    value = attrgetter(attribute)(settings)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("variable", "text"),
    [
        ("DEFENDER_TIMEOUT_SECONDS", "0"),
        ("DEFENDER_TIMEOUT_SECONDS", "-5"),
        ("DEFENDER_TIMEOUT_SECONDS", "100000"),
        ("DEFENDER_TIMEOUT_SECONDS", "20s"),
        ("ALERT_CACHE_TTL_SECONDS", "-1"),
        ("ALERT_CACHE_TTL_SECONDS", "nan"),
        ("ALERT_CACHE_TTL_SECONDS", "inf"),
        ("ALERT_CACHE_TTL_SECONDS", "one minute"),
        ("ALERT_CACHE_MAX_STALE_SECONDS", "-60"),
        ("ALERT_CACHE_MAXSIZE", "0"),
        ("ALERT_CACHE_MAXSIZE", "-1"),
        ("ALERT_CACHE_MAXSIZE", "10.5"),
        ("ALERT_CACHE_MAXSIZE", "lots"),
        ("DEFENDER_CALLS_PER_MINUTE", "0"),
        ("DEFENDER_CALLS_PER_MINUTE", "-100"),
        ("DEFENDER_CALLS_PER_MINUTE", "100.0"),
        ("DEFENDER_CALLS_PER_MINUTE", "abc"),
        ("DEFENDER_CALLS_PER_HOUR", "0"),
        ("DEFENDER_CALLS_PER_HOUR", "1e3"),
        ("DEFENDER_BACKGROUND_MINUTE_SHARE", "1.5"),
        ("DEFENDER_BACKGROUND_MINUTE_SHARE", "-0.1"),
        ("DEFENDER_BACKGROUND_MINUTE_SHARE", "50%"),
        ("DEFENDER_BACKGROUND_HOUR_SHARE", "2"),
        ("DEFENDER_BACKGROUND_HOUR_SHARE", "half"),
    ],
)
def test_bad_numbers_name_the_variable(variable: str, text: str) -> None:
    error = config_error({variable: text})
    assert str(error).startswith(f"{variable}:")
    assert repr(text) in str(error)


@pytest.mark.parametrize(
    ("text", "level"),
    [("debug", "DEBUG"), ("info", "INFO"), ("WARNING", "WARNING"), ("Error", "ERROR"), ("", None)],
)
def test_log_level(text: str, level: str | None) -> None:
    assert load({"LOG_LEVEL": text}).logging.level == level


@pytest.mark.parametrize("text", ["verbose", "warn", "trace", "10"])
def test_bad_log_level(text: str) -> None:
    message = str(config_error({"LOG_LEVEL": text}))
    assert message.startswith("LOG_LEVEL:")
    for option in ("debug", "info", "warning", "error"):
        assert option in message


# -- secret hygiene ------------------------------------------------------------------------------------------------


def test_secret_is_masked() -> None:
    secret = Secret(SECRET)
    assert secret.reveal() == SECRET
    for shown in (repr(secret), str(secret), f"{secret}", f"{secret!r}", "%s" % secret):  # noqa: UP031
        assert SECRET not in shown
        assert "***" in shown
    assert repr([secret]).count(SECRET) == 0
    assert Secret(SECRET) == Secret(SECRET)
    assert Secret(SECRET) != Secret("other")


def test_settings_never_show_the_secret() -> None:
    settings = load(API_ENV)
    assert settings.defender.client_secret is not None
    assert settings.defender.client_secret.reveal() == SECRET
    for shown in (repr(settings), str(settings), f"{settings}", repr(settings.defender.client_secret)):
        assert SECRET not in shown
    assert "Secret('***')" in repr(settings)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DEFENDER_BACKEND", "prod"),
        ("DEFENDER_TENANT_ID", "bad tenant"),
        ("DEFENDER_CLIENT_ID", "bad-client"),
        ("DEFENDER_CLOUD", "mooncake"),
        ("DEFENDER_API_URL", "http://api.example.test"),
        ("DEFENDER_AUTHORITY_URL", "https://login.example.test/?x=1"),
        ("DEFENDER_SCOPE", "https://api.example.test"),
        ("DEFENDER_TIMEOUT_SECONDS", "soon"),
        ("ALERT_CACHE_TTL_SECONDS", "-1"),
        ("ALERT_CACHE_MAX_STALE_SECONDS", "x"),
        ("ALERT_CACHE_MAXSIZE", "0"),
        ("DEFENDER_CALLS_PER_MINUTE", "many"),
        ("DEFENDER_CALLS_PER_HOUR", "-1"),
        ("DEFENDER_BACKGROUND_MINUTE_SHARE", "2"),
        ("DEFENDER_BACKGROUND_HOUR_SHARE", "x"),
        ("LOG_LEVEL", "loud"),
        (CERT_VAR, "/nonexistent/cert.pem"),  # both set: the secret must not be echoed either
    ],
)
def test_errors_for_other_variables_never_contain_the_secret(variable: str, value: str) -> None:
    error = config_error({**API_ENV, variable: value})
    assert str(error).split(":", 1)[0] in (variable, "DEFENDER_CLIENT_SECRET")
    assert SECRET not in str(error)
    assert SECRET not in repr(error)
    assert SECRET not in "".join(traceback.format_exception(error))


def test_certificate_private_key_is_not_in_repr(cert_file: Path) -> None:
    settings = load({"DEFENDER_TENANT_ID": TENANT, "DEFENDER_CLIENT_ID": CLIENT, CERT_VAR: str(cert_file)})
    assert settings.defender.certificate is not None
    key_pem = settings.defender.certificate.for_msal()["private_key"]
    key_body = [line for line in key_pem.splitlines() if line and not line.startswith("-----")]
    assert len(key_body) > 5
    for shown in (repr(settings), str(settings), repr(settings.defender.certificate)):
        assert "PRIVATE KEY" not in shown
        assert not any(line in shown for line in key_body)
    assert settings.defender.certificate.thumbprint in repr(settings)


# -- certificate credential ---------------------------------------------------------------------------------------


def _make_certificate() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device-alerts test")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return key, certificate


_KEY, _CERT = _make_certificate()
_KEY_PEM = _KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
)
_CERT_PEM = _CERT.public_bytes(serialization.Encoding.PEM)
# Computed independently of the code under test: SHA-1 over the certificate's DER encoding.
_THUMBPRINT = hashlib.sha1(_CERT.public_bytes(serialization.Encoding.DER), usedforsecurity=False).hexdigest().upper()


@pytest.fixture
def cert_file(tmp_path: Path) -> Path:
    path = tmp_path / "app.pem"
    path.write_bytes(_KEY_PEM + _CERT_PEM)
    return path


def _cert_env(path: Path | str) -> dict[str, str]:
    return {"DEFENDER_TENANT_ID": TENANT, "DEFENDER_CLIENT_ID": CLIENT, CERT_VAR: str(path)}


def test_certificate_thumbprint_and_msal_credential(cert_file: Path) -> None:
    settings = load(_cert_env(cert_file))
    assert settings.defender.backend is Backend.API
    assert settings.defender.client_secret is None
    credential = settings.defender.certificate
    assert isinstance(credential, CertificateCredential)
    assert credential.thumbprint == _THUMBPRINT
    assert len(credential.thumbprint) == 40
    msal = credential.for_msal()
    assert set(msal) == {"private_key", "thumbprint"}
    assert msal["thumbprint"] == _THUMBPRINT
    loaded = serialization.load_pem_private_key(msal["private_key"].encode(), password=None)
    assert isinstance(loaded, rsa.RSAPrivateKey)
    assert loaded.private_numbers() == _KEY.private_numbers()


def test_certificate_before_key_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cert-first.pem"
    path.write_bytes(_CERT_PEM + _KEY_PEM)
    credential = load(_cert_env(path)).defender.certificate
    assert credential is not None
    assert credential.thumbprint == _THUMBPRINT


def test_pkcs8_key_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "pkcs8.pem"
    pkcs8 = _KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pkcs8 + _CERT_PEM)
    credential = load(_cert_env(path)).defender.certificate
    assert credential is not None
    assert credential.thumbprint == _THUMBPRINT


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "case",
    ["missing", "directory", "cert only", "key only", "encrypted key", "empty", "garbage"],
)
def test_unusable_certificate_file_is_rejected(tmp_path: Path, case: str) -> None:
    encrypted = _KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"correct horse battery staple"),
    )
    paths = {
        "missing": tmp_path / "does-not-exist.pem",
        "directory": tmp_path,
        "cert only": _write(tmp_path, "cert.pem", _CERT_PEM),
        "key only": _write(tmp_path, "key.pem", _KEY_PEM),
        "encrypted key": _write(tmp_path, "encrypted.pem", encrypted + _CERT_PEM),
        "empty": _write(tmp_path, "empty.pem", b""),
        "garbage": _write(tmp_path, "garbage.pem", b"-----BEGIN NONSENSE-----\nabc\n-----END NONSENSE-----\n"),
    }
    message = str(config_error(_cert_env(paths[case])))
    assert message.startswith(f"{CERT_VAR}:")
    assert "PRIVATE KEY-----" not in message
    assert "MII" not in message  # no base64 PEM body echoed back


# -- .env file ------------------------------------------------------------------------------------------------------


def test_dotenv_values_are_used(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        f"DEFENDER_TENANT_ID={TENANT}\n"
        f"DEFENDER_CLIENT_ID={CLIENT}\n"
        f"DEFENDER_CLIENT_SECRET='{SECRET}'\n"
        "DEFENDER_CLOUD=gcc-high\n"
        "# a comment\n"
        "DEFENDER_CALLS_PER_MINUTE=42\n"
        "LOG_LEVEL=debug\n"
    )
    settings = load_settings(read_environment({}, dotenv_path=dotenv))
    assert settings.defender.backend is Backend.API
    assert settings.defender.defaulted is False
    assert settings.defender.tenant_id == TENANT
    assert settings.defender.client_secret == Secret(SECRET)
    assert settings.defender.cloud is Cloud.GCC_HIGH
    assert settings.defender.api_url == "https://api-gov.securitycenter.microsoft.us"
    assert settings.budget.per_minute == 42
    assert settings.logging.level == "DEBUG"
    assert SECRET not in repr(settings)


def test_environment_wins_over_dotenv(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("DEFENDER_CALLS_PER_MINUTE=42\nDEFENDER_CALLS_PER_HOUR=900\nDEFENDER_CLOUD=dod\n")
    env = {"DEFENDER_BACKEND": "simulator", "DEFENDER_CALLS_PER_MINUTE": "7", "DEFENDER_CLOUD": "gcc"}
    settings = load_settings(read_environment(env, dotenv_path=dotenv))
    assert settings.budget.per_minute == 7
    assert settings.budget.per_hour == 900  # only in the file
    assert settings.defender.cloud is Cloud.GCC


def test_dotenv_errors_name_the_variable(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("ALERT_CACHE_MAXSIZE=huge\n")
    with pytest.raises(ConfigError, match=r"^ALERT_CACHE_MAXSIZE:"):
        load_settings(read_environment({}, dotenv_path=dotenv))


def test_missing_dotenv_file_is_ignored(tmp_path: Path) -> None:
    settings = load_settings(read_environment({}, dotenv_path=tmp_path / "nope.env"))
    assert settings.defender.backend is Backend.SIMULATOR
    assert settings.budget.per_minute == 100


def test_default_dotenv_is_read_from_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("DEFENDER_CALLS_PER_HOUR=1234\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings(read_environment({})).budget.per_hour == 1234
    assert load_settings(read_environment({}, dotenv_path=None)).budget.per_hour == 1500
