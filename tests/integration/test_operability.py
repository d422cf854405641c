"""Operability: `GET /metrics` in Prometheus format, JSON logs, and correlation ids people can quote.

`LOG_FORMAT` on the command line is in tests/system/test_python_m_bot.py.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.slack.server import HttpServer, wsgi_app
from bot.telemetry import logs
from tests.doubles.slack import Harness, all_text, close_server, harness

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def rig() -> Iterator[Harness]:
    yield from harness(env={"BOT_AUDIT_LOG": "off"})


def scrape(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_endpoint_reports_calls_cache_budget_acks_and_watches(rig: Harness) -> None:
    server = HttpServer(wsgi_app(rig.bot.health, SlackRequestHandler(rig.bot.app), rig.bot.metrics), "127.0.0.1", 0)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        before = scrape(httpx.get(f"{base}/metrics").text)
        for url in ("a", "b"):  # the second lookup of the device is served from cache
            body, headers = rig.requests.command("ws-fin-014", response_url=rig.standin.response_url(url))
            assert httpx.post(f"{base}/slack/events", content=body, headers=headers).status_code == 200
            rig.standin.wait_for_posts(1 if url == "a" else 2)
            rig.wait_idle()
        response = httpx.get(f"{base}/metrics")
    finally:
        close_server(server)
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    after = scrape(response.text)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("device_alerts_lookups_total", source="fresh") == 1
    assert grew("device_alerts_lookups_total", source="cache") == 1
    assert grew("device_alerts_defender_requests_total", endpoint="machine-alerts", outcome="ok") == 1
    assert grew("device_alerts_ack_seconds_count") == 2
    assert grew("device_alerts_ack_seconds_bucket", le="3.0") == 2
    assert value(after, "device_alerts_budget_remaining", endpoint="machine-alerts", window="minute") == 99
    assert value(after, "device_alerts_budget_remaining", endpoint="machine-alerts", window="hour") == 1499
    assert value(after, "device_alerts_cached_devices") == 1
    assert value(after, "device_alerts_watches_active") == 0
    assert value(after, "device_alerts_followups_pending") == 0


def test_slack_errors_and_failed_lookups_are_counted(rig: Harness) -> None:
    before = scrape(rig.bot.metrics().decode())
    rig.tenant.fail_next(500, times=10)
    rig.standin.expire("gone")
    rig.command("ws-fin-015", "gone")
    rig.wait_idle()
    after = scrape(rig.bot.metrics().decode())
    assert (
        value(after, "device_alerts_lookups_total", source="failed")
        - value(before, "device_alerts_lookups_total", source="failed")
        == 1
    )
    assert (
        value(after, "device_alerts_slack_api_errors_total", method="response_url", error="404")
        - value(before, "device_alerts_slack_api_errors_total", method="response_url", error="404")
        == 1
    )
    # A hostname is looked up through /api/machines?$filter=…: the machines endpoint failed.
    assert value(after, "device_alerts_defender_requests_total", endpoint="machines", outcome="server_error") > value(
        before, "device_alerts_defender_requests_total", endpoint="machines", outcome="server_error"
    )


def test_an_error_card_quotes_the_correlation_id_of_its_log_lines(rig: Harness) -> None:
    stream = io.StringIO()
    json_handler = logs.make_handler("json", stream)  # beside pytest's handlers, as `LOG_FORMAT=json` would log
    root = logging.getLogger()
    root.addHandler(json_handler)
    try:
        rig.tenant.fail_next(500, times=10)
        rig.command("ws-fin-015", "r1")
        [card] = rig.standin.wait_for_posts(1)
        rig.wait_idle()
    finally:
        root.removeHandler(json_handler)
    text = all_text(card.payload)
    assert "Defender could not be reached." in text
    reference = text.split("Reference `")[1].split("`")[0]
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    tagged = [line for line in lines if line["correlation_id"] == reference]
    assert any("lookup of ws-fin-015 failed" in line["message"] for line in tagged)
    assert {"time", "level", "logger", "message", "correlation_id"} <= set(tagged[0])


def test_not_found_and_bad_input_cards_carry_no_reference(rig: Harness) -> None:
    rig.command("srv-zz-99", "r1")
    [card] = rig.standin.wait_for_posts(1)
    assert "No device in Defender matches" in all_text(card.payload)
    assert "Reference" not in all_text(card.payload)
