"""Use cases. Services take what they need in their constructor, own each transaction, and never import Slack."""
