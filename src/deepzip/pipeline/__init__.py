"""The compress pipeline: recipes (YAML → stage configs), stages, the resumable run loop, and the
sensitivity scan that writes recipes."""

from .compress import CompressResult, compress
from .ptq import PtqConfig, PtqResult, compress_pretrained
from .recipe import Recipe, default_recipe, find_recipe, from_dict, load_recipe, save_recipe, shipped_recipes, student_recipe
from .run import Source, prepare, run_recipe, score_chosen
from .search import search
from .sweep import parse_weights, sweep

__all__ = [
    "CompressResult",
    "compress",
    "compress_pretrained",
    "PtqConfig",
    "PtqResult",
    "find_recipe",
    "search",
    "Recipe",
    "Source",
    "prepare",
    "run_recipe",
    "score_chosen",
    "default_recipe",
    "from_dict",
    "load_recipe",
    "parse_weights",
    "save_recipe",
    "shipped_recipes",
    "student_recipe",
    "sweep",
]
