"""Socket Mode: the bot connects out to Slack over a WebSocket; no public URL needed."""

from __future__ import annotations

import logging

from slack_bolt.adapter.socket_mode import SocketModeHandler

from bot.slack.server import HttpServer, Served, wsgi_app

log = logging.getLogger(__name__)


def run_socket_mode(bot: Served) -> None:
    """Connect and serve until interrupted; with PORT set, also answer `GET /healthz` there."""
    app_token = bot.settings.app_token
    if app_token is None:
        raise ValueError("Socket Mode needs SLACK_APP_TOKEN")
    health = None
    if bot.settings.port is not None:
        health = HttpServer(wsgi_app(bot.health, None, bot.metrics), bot.settings.host, bot.settings.port).start()
        log.info("health endpoint on %s port %d", bot.settings.host, health.port)
    handler = SocketModeHandler(bot.app, app_token.reveal(), web_client=bot.app.client)
    try:
        handler.start()  # type: ignore[no-untyped-call]
    finally:
        handler.close()  # type: ignore[no-untyped-call]
        if health is not None:
            health.close()
