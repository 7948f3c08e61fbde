"""Ranking that learns from graded pairs: training the re-ranker from the platform's own grades."""
