"""Demand lists and key-achievement lists (measure 1): compile, mark up, export to XLSX, import back."""
