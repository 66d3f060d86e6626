"""deepzip: Deep Compression for PyTorch, down to a real file that runs where the model ships.

result = dz.compress(model, train_loader, test_loader, max_drop=0.5)   # the whole pipeline

import deepzip as dz
dz.prune_(model, sparsity=0.9)
dz.train(model, data, epochs=4)              # masks respected by any loop
dz.share_weights_(model, bits={"conv": 8, "linear": 5})
dz.train(model, data, epochs=2)              # centroids fine-tuned
dz.save(model, "model.dzip")
model = dz.load("model.dzip")
"""

from ._version import __version__
from .distill import AdversarialLoss, DistillLoss, HintLoss, SoftTargetLoss, soft_target_loss
from .dzip import load, recode, save
from .errors import (
    ConfigError,
    DataError,
    DeepzipError,
    DeepzipWarning,
    DzipFormatError,
    InvalidSetting,
    ModelMismatchError,
    NumericsError,
    RunStateError,
    TrainingError,
)
from .export import export_c, export_onnx
from .models import create as create_model
from .pipeline import CompressResult, PtqConfig, compress, compress_pretrained
from .prune import (
    ActivationWeighted,
    GradualPruning,
    Magnitude,
    MagnitudePruning,
    prune_,
    prune_dead_inputs_,
    prune_units_,
    sparsity_of,
)
from .quantize import KMeans, PostTraining, RateLoss, calibrate, harden_, quantize_pretrained_, round_, share_weights_
from .reparam import strip_
from .report import inspect
from .structured import prune_channels_
from .train import (
    Checkpoint,
    Evaluate,
    History,
    TensorBoard,
    TrainConfig,
    evaluate,
    load_checkpoint,
    predict,
    save_checkpoint,
    train,
)

__all__ = [
    "CompressResult",
    "compress",
    "compress_pretrained",
    "PtqConfig",
    "PostTraining",
    "calibrate",
    "quantize_pretrained_",
    "AdversarialLoss",
    "Checkpoint",
    "DistillLoss",
    "HintLoss",
    "ConfigError",
    "DataError",
    "DeepzipError",
    "DeepzipWarning",
    "DzipFormatError",
    "NumericsError",
    "Evaluate",
    "ActivationWeighted",
    "GradualPruning",
    "Magnitude",
    "History",
    "KMeans",
    "RateLoss",
    "harden_",
    "MagnitudePruning",
    "InvalidSetting",
    "ModelMismatchError",
    "RunStateError",
    "SoftTargetLoss",
    "TensorBoard",
    "TrainingError",
    "__version__",
    "create_model",
    "evaluate",
    "export_c",
    "export_onnx",
    "inspect",
    "load",
    "load_checkpoint",
    "predict",
    "prune_",
    "recode",
    "prune_channels_",
    "prune_dead_inputs_",
    "prune_units_",
    "round_",
    "save",
    "save_checkpoint",
    "share_weights_",
    "soft_target_loss",
    "sparsity_of",
    "strip_",
    "train",
    "TrainConfig",
]
