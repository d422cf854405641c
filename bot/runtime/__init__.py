"""The composition root: one process's long-lived parts built from settings.

`build_runtime` (`core`) wires state, the Defender client and the alert service; `build_slack_bot`
(`slack_bot`) puts the Slack edge (Bolt app, listeners, work pool, watches) on top. Nothing below this
package chooses an implementation.
"""

from bot.runtime.core import Runtime, build_runtime, retirement_warning
from bot.runtime.slack_bot import SlackBot, build_slack_bot, health_problems

__all__ = ["Runtime", "SlackBot", "build_runtime", "build_slack_bot", "health_problems", "retirement_warning"]
