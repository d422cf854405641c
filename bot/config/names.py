"""Names in the environment that look like settings but are not in the table: a misspelling stops start-up."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from bot.config.kinds import ConfigError
from bot.config.variables import VARIABLES

# A variable with one of these prefixes is meant for the bot; a misspelled one would be ignored (failing open).
PREFIXES = ("BOT_", "DEFENDER_", "SLACK_")
WHERE_LISTED = "the settings are listed in the README's Configuration section"


def check_names(names: Iterable[str]) -> None:
    """`ConfigError` naming the first `BOT_`/`DEFENDER_`/`SLACK_` name that is not a setting, with the closest one."""
    known = [variable.name for variable in VARIABLES]
    unknown = sorted(name for name in set(names) if name.startswith(PREFIXES) and name not in known)
    if not unknown:
        return
    name = unknown[0]
    close = difflib.get_close_matches(name, known, n=1)
    fix = f"did you mean {close[0]}?" if close else WHERE_LISTED
    more = f" ({len(unknown) - 1} more unknown)" if len(unknown) > 1 else ""
    raise ConfigError(f"{name} is not a setting{more}; {fix}")
