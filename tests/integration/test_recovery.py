"""Commands a stopped process acknowledged, answered by this one (`Listeners.answer_accepted`) through the real
Bolt app, gate, pool and poster: access is checked again when they are answered, and fails closed."""

from __future__ import annotations

import time
from pathlib import Path

from bot.state.work import AcceptedCommand
from bot.state.work_sqlite import SqliteWorkStore
from tests.doubles.slack import harness, header

FIN_014 = "ws-fin-014.contoso.local"


def test_left_commands_are_answered_after_checking_access_again(tmp_path: Path) -> None:
    """Two lookups a dead process acknowledged: Bob may still use the bot and gets his card; Alice was removed
    from `BOT_ALLOWED_USERS` since, and gets the refusal, not the card."""
    state_url = f"sqlite:///{tmp_path}/state.db"
    for rig in harness(env={"BOT_ALLOWED_USERS": "U0BOB"}, state_url=state_url):
        left = SqliteWorkStore(state_url)  # what the dead process wrote; its claims have run out
        for user in ("U0BOB", "U0ALICE"):
            url = rig.standin.response_url(f"left-{user}")
            team = rig.requests.team_id
            command = AcceptedCommand(user, "ws-fin-014", url, team, "C0INCIDENT", user, None, None, False, time.time())
            left.record(command, claim_until=0.0)
        assert rig.bot.accepted.recover_once(rig.bot.listeners.answer_accepted) == 2
        rig.wait_idle()
        posts = {p.target: p for p in rig.standin.wait_for_posts(2)}
        assert header(posts["left-U0BOB"]).startswith(f"{FIN_014} · ")
        assert (
            posts["left-U0ALICE"].payload["text"].startswith("You are not on this bot's list of people who may use it.")
        )
        assert left.claim_due(now=time.time() + 3600, claim_until=0.0, limit=10) == []  # both done
        left.close()
