"""Deals (长效跟踪): from a match to a contract, its registration, payments over years and landing."""
