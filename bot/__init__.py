"""device-alerts: a Slack chat-ops bot that summarizes Microsoft Defender for Endpoint alerts per device."""

__version__ = "0.1.0"
