"""Tests of the subsidy engine, written clause by clause from the seed."""
