"""Shared state for several bot processes: the Redis backend (`BOT_STATE_URL=redis://…`) and its fallbacks."""
