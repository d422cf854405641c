"""The Slack side of the bot: Block Kit rendering, command parsing, Bolt listeners and the servers."""
