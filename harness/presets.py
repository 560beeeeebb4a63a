"""The preset names and lookup live with the models (``models.presets``), which import nothing above them."""

from models.presets import DEFAULT_PRESET, PRESETS, preset_values

__all__ = ["DEFAULT_PRESET", "PRESETS", "preset_values"]
