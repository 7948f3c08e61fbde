"""Needs and achievements: create/publish, read, list, update, withdraw; their search documents and index sync."""
