"""HTTP, pages and the command line: the front doors. No business rules here."""
