"""Baselines beside CARAT (registered on import)."""
