"""Conversion specs, one module per architecture: ``<name>_rules(...) -> list[Rule]``."""
