"""How an identity provider's refusal becomes an `AuthError`: the code, the message and a hint."""

from __future__ import annotations

from bot.defender.auth import auth_error_from_result


def test_code_is_read_from_the_description_when_error_codes_is_missing() -> None:
    error = auth_error_from_result(
        {"error": "invalid_client", "error_description": "AADSTS7000222: The secret expired."}
    )
    assert error.code == "7000222"
    assert error.message == "The secret expired."
    assert "expired" in error.hint
