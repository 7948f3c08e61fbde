"""Researchers as a supply side (measures 11 and 12): profiles, matching to needs, programmes, placements."""
