"""Socket Mode: the bot connects out to Slack over a WebSocket; no public URL needed."""

from __future__ import annotations

import logging

from slack_bolt.adapter.socket_mode import SocketModeHandler

from bot.slack.server import HttpServer, Served, wsgi_app

log = logging.getLogger(__name__)


class SocketModeConnection:
    """The WebSocket to Slack and, with PORT set, the health endpoint: connected at once, closed in two steps."""

    def __init__(self, bot: Served) -> None:
        app_token = bot.settings.app_token
        if app_token is None:
            raise ValueError("Socket Mode needs SLACK_APP_TOKEN")
        self._health: HttpServer | None = None
        if bot.settings.port is not None:
            application = wsgi_app(bot.health, None, bot.metrics, draining=bot.draining)
            self._health = HttpServer(application, bot.settings.host, bot.settings.port)
            self._health.start()
            log.info("health endpoint on %s port %d", bot.settings.host, self._health.port)
        self._handler = SocketModeHandler(bot.app, app_token.reveal(), web_client=bot.app.client)
        try:
            self._handler.connect()  # type: ignore[no-untyped-call]
        except BaseException:
            self.close()
            raise

    def stop_taking_work(self) -> None:
        """Hang up on Slack: it sends new events to the app's other connections (or holds them until one opens)."""
        self._handler.close()  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self.stop_taking_work()
        if self._health is not None:
            self._health.close()
