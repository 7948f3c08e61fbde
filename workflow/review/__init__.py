"""Expert review (专家论证): rounds over pooled pairs, conflict-free assignment, grades, agreement, metrics."""
