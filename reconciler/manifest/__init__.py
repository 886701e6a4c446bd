"""Manifests: the format (``model``), quantities, and loading files into validated values."""
