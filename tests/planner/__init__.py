"""Planner, property and controller tests (a package, so their module names stay unique)."""
