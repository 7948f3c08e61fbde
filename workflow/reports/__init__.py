"""Yearly reports per organisation and per agency: leads, responses, deals, contracts, payments, subsidies."""
