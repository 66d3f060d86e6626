"""The compress pipeline: recipes (YAML → stage configs), stages, the resumable run loop, and the
sensitivity scan that writes recipes."""
from .recipe import Recipe, default_recipe, from_dict, load_recipe, save_recipe
from .run import compress
from .sweep import parse_weights, sweep

__all__ = ["Recipe", "compress", "default_recipe", "from_dict", "load_recipe", "parse_weights", "save_recipe", "sweep"]
