"""People, organisations, roles, tokens and the audit log."""
