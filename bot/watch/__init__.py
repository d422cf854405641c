"""Device watches: follow-ups posted in a card's thread when a watched device's alerts change, exactly once."""
