"""Slack-facing code: the Bolt app, its listeners and Block Kit builders. Nothing below bot/ imports this."""
