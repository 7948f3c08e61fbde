"""Text → tokens → vectors → ranked, explained hits. Knows nothing of HTTP or ORM sessions."""
