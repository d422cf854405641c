"""The tenant's advanced hunting: `POST /v1.0/security/runHuntingQuery` over a `DeviceInfo` view of its machines.

The view: each machine reports a `DeviceInfo` row at its lastSeen and on each of the two days before, so every
device has several rows (the older ones with another sensor health state, to expose "first row wins" bugs); a
re-onboarded device has rows under each of its ids. Rows older than 30 days are gone, as in Defender, where a
query without a `Timespan` covers the last 30 days: a device unseen for longer is not found. Rows come newest
Timestamp first.

The table is made per query from the machines its `where` can match (a 100,000-device fleet is never made
whole). Only the small KQL the Graph client sends is understood; any other query is 400 BadRequest:

    DeviceInfo
    | where DeviceId == '<id>'  |  DeviceName =~ '<name>'  |  DeviceName startswith '<prefix>'
    [| summarize arg_max(Timestamp, *) by DeviceId]
    [| order by Timestamp desc]          (`sort by` too; `asc` also works)
    | take <n>                           (`limit` too; n from 1 to 100,000, Graph's row cap)

String literals take single or double quotes with backslash escapes; `==` is case-sensitive, `=~` and
`startswith` are not, as in KQL. Without `order by`, summarized rows come in no particular order (by DeviceId
here), as KQL promises none. The request body must be a JSON object with the `Query` string and nothing else
(the optional `Timespan` is not modelled).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx

from bot.defender.simulator.dataset import Json, iso
from bot.defender.simulator.odata import ApiError, ticks

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The machine records a `where` on (column, operator, value) can match: the tenant finds them without a scan.
MachinesMatching = Callable[[str, str, str], list[Json]]
RETENTION = timedelta(days=30)
REPORTS = 3  # DeviceInfo rows per machine: at lastSeen and on each of the days before
MAX_ROWS = 100_000
HUNTING_CONTEXT = "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.security.huntingQueryResults"

# fmt: off
COLUMNS = (
    ("Timestamp", "DateTime"), ("DeviceId", "String"), ("DeviceName", "String"), ("ClientVersion", "String"),
    ("PublicIP", "String"), ("OSArchitecture", "String"), ("OSPlatform", "String"), ("OSBuild", "Int64"),
    ("IsAzureADJoined", "Boolean"), ("AadDeviceId", "String"), ("LoggedOnUsers", "String"),
    ("OSVersion", "String"), ("MachineGroup", "String"), ("ReportId", "Int64"), ("OnboardingStatus", "String"),
    ("SensorHealthState", "String"), ("ExposureLevel", "String"), ("AssetValue", "String"),
    ("DeviceManualTags", "String"), ("DeviceDynamicTags", "String"),
)
_STRING = r"""(?:'(?P<sq>(?:[^'\\]|\\.)*)'|"(?P<dq>(?:[^"\\]|\\.)*)")"""
_QUERY = re.compile(
    r"\s*DeviceInfo\s*"
    rf"\|\s*where\s+(?P<column>DeviceId|DeviceName)\s+(?P<op>==|=~|startswith)\s+{_STRING}\s*"
    r"(?P<summarize>\|\s*summarize\s+arg_max\(\s*Timestamp\s*,\s*\*\s*\)\s+by\s+DeviceId\s*)?"
    r"(?P<order>\|\s*(?:order|sort)\s+by\s+Timestamp(?:\s+(?P<direction>asc|desc))?\s*)?"
    r"\|\s*(?:take|limit)\s+(?P<take>[0-9]{1,9})\s*"
)
# fmt: on


def _bad(message: str) -> ApiError:
    return ApiError(400, message, "BadRequest")


def device_info_rows(machines: list[Json], now: datetime, reports: int = REPORTS) -> list[Json]:
    """The `DeviceInfo` table of the last 30 days, newest Timestamp first (`reports` rows per machine at most)."""
    rows: list[Json] = []
    horizon = ticks(iso(now - RETENTION)) or 0
    for serial, machine in enumerate(machines):
        last_seen = ticks(machine.get("lastSeen"))
        if last_seen is None:
            continue
        seen = _EPOCH + timedelta(microseconds=last_seen // 10)
        for age in range(reports):
            stamp = iso(seen - timedelta(days=age), 7)
            if (ticks(stamp) or 0) >= horizon:
                rows.append(_row(machine, stamp, serial * REPORTS + age, current=age == 0))
    return sorted(rows, key=lambda row: ticks(row["Timestamp"]) or 0, reverse=True)


def _row(machine: Json, stamp: str, report: int, *, current: bool) -> Json:
    health = machine.get("healthStatus")
    if not current:  # an earlier report: the sensor was in another state then
        health = "ImpairedCommunication" if health == "Active" else "Active"
    platform = str(machine.get("osPlatform") or "")
    return {
        "Timestamp": stamp,
        "DeviceId": machine["id"],
        "DeviceName": machine.get("computerDnsName"),
        "ClientVersion": "10.8760.26100.1000" if platform.startswith("Windows") else "101.24092.0001",
        "PublicIP": machine.get("lastExternalIpAddress"),
        "OSArchitecture": "arm64" if machine.get("osProcessor") == "arm64" else "x64",
        "OSPlatform": platform,
        "OSBuild": machine.get("osBuild"),
        "IsAzureADJoined": bool(machine.get("isAadJoined")),
        "AadDeviceId": machine.get("aadDeviceId"),
        "LoggedOnUsers": "[]",
        "OSVersion": machine.get("version"),
        "MachineGroup": machine.get("rbacGroupName"),
        "ReportId": 1000 + report,
        "OnboardingStatus": machine.get("onboardingStatus"),
        "SensorHealthState": health,
        "ExposureLevel": machine.get("exposureLevel"),
        "AssetValue": machine.get("deviceValue"),
        "DeviceManualTags": json.dumps(list(machine.get("machineTags") or [])),
        "DeviceDynamicTags": "[]",
    }


def _unescape(raw: str) -> str:
    return re.sub(r"\\(.)", r"\1", raw)


def _value(match: re.Match[str]) -> str:
    return _unescape(match["sq"] if match["sq"] is not None else match["dq"])


def _where(column: str, op: str, value: str) -> Callable[[Json], bool]:
    if op == "==":
        return lambda row: row.get(column) == value
    folded = value.casefold()
    if op == "=~":
        return lambda row: str(row.get(column) or "").casefold() == folded
    return lambda row: str(row.get(column) or "").casefold().startswith(folded)


def _latest_per_device(rows: list[Json]) -> list[Json]:
    latest: dict[str, Json] = {}
    for row in rows:
        kept = latest.get(row["DeviceId"])
        if kept is None or (ticks(row["Timestamp"]) or 0) > (ticks(kept["Timestamp"]) or 0):
            latest[row["DeviceId"]] = row
    return [latest[device] for device in sorted(latest)]  # KQL promises no order after summarize


def run_query(query: str, table: list[Json]) -> list[Json]:
    """The rows `query` selects from `table`; a query outside the supported form is 400 BadRequest."""
    match = _QUERY.fullmatch(query)
    if match is None:
        raise _bad(f"The simulator's advanced hunting supports only the Graph client's DeviceInfo lookups: {query}")
    take = int(match["take"])
    if not 1 <= take <= MAX_ROWS:
        raise _bad(f"take must be between 1 and {MAX_ROWS}")
    value = _value(match)
    rows = [row for row in table if _where(match["column"], match["op"], value)(row)]
    if match["summarize"]:
        rows = _latest_per_device(rows)
    if match["order"]:  # KQL sorts descending unless told otherwise
        rows.sort(key=lambda row: ticks(row["Timestamp"]) or 0, reverse=match["direction"] != "asc")
    return rows[:take]


def hunting_answer(request: httpx.Request, machines: MachinesMatching, now: datetime) -> httpx.Response:
    """Answer one runHuntingQuery request over the `DeviceInfo` rows of the machines its `where` can match."""
    if request.headers.get("Content-Type", "").split(";")[0].strip().lower() != "application/json":
        raise _bad("runHuntingQuery takes a JSON body (Content-Type: application/json)")
    try:
        body = json.loads(request.content or b"null")
    except ValueError:
        raise _bad("The request body is not valid JSON") from None
    if not isinstance(body, dict) or set(body) != {"Query"} or not isinstance(body["Query"], str):
        raise _bad("The request body must be a JSON object with the Query string (Timespan is not simulated)")
    query = body["Query"]
    match = _QUERY.fullmatch(query)
    candidates = machines(match["column"], match["op"], _value(match)) if match else []
    # arg_max(Timestamp) keeps each device's newest row: the older ones need not be made.
    rows = run_query(query, device_info_rows(candidates, now, 1 if match and match["summarize"] else REPORTS))
    schema = [{"name": name, "type": kind} for name, kind in COLUMNS]
    return httpx.Response(200, json={"@odata.context": HUNTING_CONTEXT, "schema": schema, "results": rows})
