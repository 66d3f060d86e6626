"""The compress pipeline: recipes (YAML → stage configs), stages (built in, or your own with
`@stage`), the run context they share, the resumable run loop, and the sensitivity scan that
writes recipes."""

from .compress import CompressResult, compress
from .context import RunContext
from .finish import RunReport, score_chosen
from .ptq import PtqConfig, PtqResult, compress_pretrained
from .recipe import (
    ChannelStage,
    DistillStage,
    PruneStage,
    RateStage,
    Recipe,
    ShareStage,
    TrainStage,
    default_recipe,
    find_recipe,
    from_dict,
    load_recipe,
    save_recipe,
    shipped_recipes,
    student_recipe,
)
from .run import run_recipe
from .search import search
from .source import Source, prepare
from .stage import Stage, StageResult, stage
from .sweep import parse_weights, sweep

__all__ = [
    "ChannelStage",
    "DistillStage",
    "PruneStage",
    "RateStage",
    "RunContext",
    "RunReport",
    "ShareStage",
    "Stage",
    "StageResult",
    "TrainStage",
    "stage",
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
