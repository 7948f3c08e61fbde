"""Carriers (events, centres, bases, agencies) and their annual performance evaluations with computed evidence."""
