"""Workarounds for third-party packages that do not import cleanly on this stack."""
