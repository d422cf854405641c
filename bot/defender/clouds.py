"""Where each Microsoft cloud keeps its login authority, Defender API, token scope, portal and Microsoft Graph."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class CloudEndpoints:
    authority_host: str
    api_base: str
    scope: str
    portal: str
    graph_base: str = "https://graph.microsoft.com"  # Microsoft Graph (security alerts_v2, runHuntingQuery)
    graph_scope: str = "https://graph.microsoft.com/.default"


class Cloud(enum.Enum):
    COMMERCIAL = "commercial"
    GCC = "gcc"
    GCC_HIGH = "gcc-high"
    DOD = "dod"

    @property
    def endpoints(self) -> CloudEndpoints:
        return _ENDPOINTS[self]


_GOV_API = "https://api-gov.securitycenter.microsoft.us"
# Commercial and GCC share the global Graph service; GCC High and DoD each have their own.
_GRAPH_GCC_HIGH = "https://graph.microsoft.us"
_GRAPH_DOD = "https://dod-graph.microsoft.us"
_ENDPOINTS = {
    Cloud.COMMERCIAL: CloudEndpoints(
        "https://login.microsoftonline.com",
        "https://api.security.microsoft.com",
        "https://api.securitycenter.microsoft.com/.default",
        "https://security.microsoft.com",
    ),
    Cloud.GCC: CloudEndpoints(
        "https://login.microsoftonline.com",
        "https://api-gcc.securitycenter.microsoft.us",
        "https://api-gcc.securitycenter.microsoft.us/.default",
        "https://security.microsoft.com",
    ),
    Cloud.GCC_HIGH: CloudEndpoints(
        "https://login.microsoftonline.us",
        _GOV_API,
        f"{_GOV_API}/.default",
        "https://security.microsoft.us",
        _GRAPH_GCC_HIGH,
        f"{_GRAPH_GCC_HIGH}/.default",
    ),
    Cloud.DOD: CloudEndpoints(
        "https://login.microsoftonline.us",
        _GOV_API,
        f"{_GOV_API}/.default",
        "https://security.apps.mil",
        _GRAPH_DOD,
        f"{_GRAPH_DOD}/.default",
    ),
}

# Authorities MSAL can validate through instance discovery; any other host needs it turned off.
WELL_KNOWN_AUTHORITY_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoftonline.us",
        "login.microsoft.com",
        "login.windows.net",
        "login.partner.microsoftonline.cn",
        "login.chinacloudapi.cn",
        "login-us.microsoftonline.com",
        "login.usgovcloudapi.net",
        "login.sts.microsoft.com",
    }
)


def is_well_known_authority(url: str) -> bool:
    return (urlsplit(url).hostname or "").lower() in WELL_KNOWN_AUTHORITY_HOSTS


def graph_scope_for(base_url: str) -> str:
    """The token scope for the Graph service at `base_url` (its origin + `/.default`)."""
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}/.default"
