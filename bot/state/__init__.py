"""Persistent and shared state behind small protocols: the rate budget, the alert cache, event dedupe,
request limits and watches, in process (the default), in SQLite (watches) or in Redis (every piece, shared
by several processes). `bot.state.factory.open_state` builds them all from one URL.
"""
