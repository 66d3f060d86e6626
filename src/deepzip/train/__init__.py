"""Training: one loop with a loss function and callbacks; checkpoints that resume it exactly."""

from ..checks import resolve_device  # the device rule, shared with dz.load
from .callbacks import Checkpoint, Evaluate, History, TensorBoard
from .checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from .config import TrainConfig, check_training
from .loop import ProgressBar, TrainState, cross_entropy, evaluate, predict, seed_everything, train
from .metrics import Cosine, Custom, Metric, Perplexity, Top1, metric_of

__all__ = [
    "Cosine",
    "Custom",
    "Metric",
    "Perplexity",
    "Top1",
    "metric_of",
    "Checkpoint",
    "Evaluate",
    "History",
    "ProgressBar",
    "TensorBoard",
    "TrainConfig",
    "TrainState",
    "check_training",
    "cross_entropy",
    "evaluate",
    "load_checkpoint",
    "predict",
    "read_checkpoint",
    "resolve_device",
    "save_checkpoint",
    "seed_everything",
    "train",
]
