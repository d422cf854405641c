"""Integration with the Microsoft Defender for Endpoint API: typed models, errors, auth, client, simulator."""
