"""Scripts that print measured figures; never part of the test suite's pass/fail."""
