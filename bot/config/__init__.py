"""Configuration: read once at start-up from the environment (and `.env`), validated into grouped settings.

- `environment.read_environment`: the one place that reads the process environment and `.env` (the
  environment wins); everything else receives the merged mapping.
- `variables`: the table of variables (name, kind, bounds, default, meaning, group), which drives parsing,
  error messages and the README's tables (`docs`); `kinds` holds the kinds and the `Reader`.
- `settings.load_settings` → `Settings` (defender, cache, budget, state, watch, logging);
  `slack.load_slack_settings` → `SlackSettings` (with its `access` group), for the Slack entry points only.

A missing or invalid value stops start-up with one `ConfigError` line that names the variable and what
is expected. Secret values are wrapped in `Secret`, which never shows its value in `repr`, `str`,
errors or logs.
"""

from bot.config.defender import Backend, CertificateCredential, DataApi, DefenderSettings, check_server_backend
from bot.config.environment import read_environment
from bot.config.kinds import ConfigError, Secret
from bot.config.settings import CacheSettings, LoggingSettings, Settings, StateSettings, WatchSettings, load_settings
from bot.config.slack import AccessSettings, SlackMode, SlackSettings, Visibility, load_slack_settings, slack_mode

__all__ = [
    "AccessSettings",
    "Backend",
    "CacheSettings",
    "CertificateCredential",
    "ConfigError",
    "DataApi",
    "DefenderSettings",
    "LoggingSettings",
    "Secret",
    "Settings",
    "SlackMode",
    "SlackSettings",
    "StateSettings",
    "Visibility",
    "WatchSettings",
    "check_server_backend",
    "load_settings",
    "load_slack_settings",
    "read_environment",
    "slack_mode",
]
