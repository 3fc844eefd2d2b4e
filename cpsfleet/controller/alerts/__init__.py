"""Alerts: their lifecycle (firing, resolved, acknowledged, silenced) and their delivery."""
