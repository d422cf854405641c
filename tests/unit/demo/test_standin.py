"""The Slack stand-in answers response_urls as Slack does: what `replace_original` can and cannot replace."""

from __future__ import annotations

import httpx

from bot.demo.standin import SlackStandIn


def send(url: str, text: str, **fields: object) -> None:
    assert httpx.post(url, json={"text": text, **fields}, timeout=5).status_code == 200


def test_a_command_s_response_url_cannot_replace_the_ack_s_note() -> None:
    with SlackStandIn() as standin:
        url = standin.response_url("r1")
        send(url, "the answer", replace_original=True)  # the only earlier message came back in the ack
        send(url, "a newer answer", replace_original=True)  # this one replaces the message sent through the url
        first, second = standin.posts
        assert (first.replaced, second.replaced) == (False, True)


def test_a_button_s_response_url_replaces_the_message_it_is_on() -> None:
    with SlackStandIn() as standin:
        send(standin.response_url("b1", for_action=True), "refreshed card", replace_original=True)
        send(standin.response_url("b2", for_action=True), "a new message", replace_original=False)
        replaced, new = standin.posts
        assert (replaced.replaced, new.replaced) == (True, False)
