"""Button values: the seal that proves the bot wrote a value, and the lookup codec inside it
(`lookup_value` / `parse_lookup_value`)."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest

from bot.alerts.query import MAX_QUERY_LENGTH, AlertFilters, DeviceQuery, QueryError
from bot.defender.models import AlertStatus, Severity
from bot.defender.refs import DeviceRef, RefKind
from bot.slack import actions
from bot.slack.actions import ButtonSeal, InvalidButton
from bot.slack.blockkit import MAX_BUTTON_VALUE

# Button seals -------------------------------------------------------------------------------------------------


def test_a_sealed_value_opens_and_any_change_breaks_it() -> None:
    seal = ButtonSeal.from_secret("secret-one")
    value = "c7663fe2de4691490a39131d227c25d9dc2bc9d6 severity:high"
    sealed = seal.seal(value)
    assert seal.open(sealed) == value
    for forged in (
        value,
        sealed.replace("severity:high", "severity:low"),
        sealed[:-1],
        "A" + sealed[1:],
        ButtonSeal.from_secret("secret-two").seal(value),
        "",
        ".",
        sealed + "x" * 2000,
    ):
        with pytest.raises(InvalidButton):
            seal.open(forged)


def test_after_a_rotation_values_sealed_with_the_previous_secret_still_open() -> None:
    value = "c7663fe2de4691490a39131d227c25d9dc2bc9d6 severity:high"
    old = ButtonSeal.from_secret("secret-before").seal(value)
    rotated = ButtonSeal.from_secret("secret-after", "secret-before")
    assert rotated.open(old) == value
    assert rotated.open(rotated.seal(value)) == value
    assert rotated.seal(value) == ButtonSeal.from_secret("secret-after").seal(value)  # sealed with the new key
    with pytest.raises(InvalidButton):  # once the previous secret is removed, old cards' buttons are refused
        ButtonSeal.from_secret("secret-after").open(old)
    with pytest.raises(InvalidButton):
        rotated.open(ButtonSeal.from_secret("secret-of-someone-else").seal(value))


def test_the_seal_key_is_not_the_signing_secret_and_never_prints() -> None:
    seal = ButtonSeal.from_secret("signing-secret-value")
    assert "signing-secret-value" not in repr(seal)
    with pytest.raises(ValueError, match="16 bytes"):
        ButtonSeal(b"short")


# The lookup codec ----------------------------------------------------------------------------------------------

MID = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
HOST = "ws-fin-014.contoso.local"
NOT_A_DEVICE = "not a machine id (40 hex characters) or a hostname (letters, digits, '-', '_' and '.')"


def machine(value: str = MID) -> DeviceRef:
    return DeviceRef(RefKind.MACHINE_ID, value)


_SEVERITIES = [Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.INFORMATIONAL, Severity.UNSPECIFIED]
_STATUSES = [AlertStatus.NEW, AlertStatus.IN_PROGRESS, AlertStatus.RESOLVED]
_SINCES = [
    None,
    timedelta(minutes=1),
    timedelta(minutes=90),
    timedelta(hours=24),
    timedelta(hours=36),
    timedelta(days=7),
    timedelta(weeks=2),
    timedelta(minutes=9999),
    timedelta(days=180),
]


def _subsets(items: list[object]) -> list[frozenset[object]]:
    return [frozenset(c) for n in range(len(items) + 1) for c in itertools.combinations(items, n)]


def test_lookup_value_round_trips_every_filter_combination() -> None:
    seen = set()
    for severities, statuses, since in itertools.product(_subsets(_SEVERITIES), _subsets(_STATUSES), _SINCES):
        filters = AlertFilters(severities, statuses, since)  # type: ignore[arg-type]
        value = actions.lookup_value(MID, filters)
        assert value.startswith(MID)
        assert len(value) <= MAX_BUTTON_VALUE
        assert actions.parse_lookup_value(value) == DeviceQuery(machine(), filters)
        seen.add(value)
    assert len(seen) == 32 * 8 * len(_SINCES)


@pytest.mark.parametrize(
    ("filters", "value"),
    [
        (AlertFilters(), MID),
        (AlertFilters(frozenset({Severity.LOW, Severity.HIGH})), f"{MID} severity:high,low"),
        (
            AlertFilters(
                frozenset({Severity.INFORMATIONAL}),
                frozenset({AlertStatus.RESOLVED, AlertStatus.NEW}),
                timedelta(hours=48),
            ),
            f"{MID} severity:informational status:new,resolved since:2d",
        ),
        (AlertFilters(since=timedelta(minutes=90)), f"{MID} since:90m"),
    ],
)
def test_lookup_value_format(filters: AlertFilters, value: str) -> None:
    assert actions.lookup_value(MID, filters) == value


def test_parse_lookup_value_accepts_an_upper_case_id() -> None:
    assert actions.parse_lookup_value(MID.upper() + " status:new") == DeviceQuery(
        machine(), AlertFilters(statuses=frozenset({AlertStatus.NEW}))
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ws-fin-014", "button payload does not name a machine id"),
        (f"{HOST} severity:high", "button payload does not name a machine id"),
        (MID[:39], "button payload does not name a machine id"),
        (MID + "0", "button payload does not name a machine id"),
        (MID + " " + "x" * MAX_BUTTON_VALUE, "button payload too long"),
        ("x" * (MAX_BUTTON_VALUE + 1), "button payload too long"),
        (MID + " " * (MAX_BUTTON_VALUE - len(MID)), f"the request is longer than {MAX_QUERY_LENGTH} characters"),
        ("", "name a device: a machine id or a hostname"),
        ("   ", "name a device: a machine id or a hostname"),
        (
            "<script>",
            "'<script>': " + NOT_A_DEVICE,
        ),
        (
            f"../{MID}",
            f"'../{MID}': {NOT_A_DEVICE}",
        ),
        (f"{MID} colour:red", "unknown filter 'colour:' (use severity:, status: or since:)"),
        (f"{MID} {MID}", f"one device per lookup: got '{MID}' and '{MID}'"),
        (f"{MID} since:1y", "'since:1y' is not a duration like 30m, 24h, 7d or 2w"),
        (f"{MID} severity:", "'severity:' has an empty value"),
        ('{"machine": "x"}', "unknown filter '{\"machine\":' (use severity:, status: or since:)"),
        (
            f"{MID}/../../api",
            f"'{MID}/../../api': {NOT_A_DEVICE}",
        ),
    ],
)
def test_parse_lookup_value_rejects_what_the_bot_would_not_write(value: str, message: str) -> None:
    with pytest.raises(QueryError) as caught:
        actions.parse_lookup_value(value)
    assert str(caught.value) == message
