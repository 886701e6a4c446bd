"""The daemon package: source → desired → planner → executor."""
