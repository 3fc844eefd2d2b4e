"""Commands sent to agents (rescan) and what changed in their answers."""
