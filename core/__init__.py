"""Shared kernel: settings and the domain error family. Imports nothing else of the project."""
