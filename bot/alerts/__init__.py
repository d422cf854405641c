"""The alert domain: query grammar, rate budget, caching and the alert service."""
