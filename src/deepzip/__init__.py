"""deepzip: Deep Compression for PyTorch, down to a real file and a real speed-up.

    import deepzip as dz
    dz.prune_(model, sparsity=0.9)
    dz.train(model, data, epochs=4)              # masks respected by any loop
    dz.share_weights_(model, bits={"conv": 8, "linear": 5})
    dz.train(model, data, epochs=2)              # centroids fine-tuned
    dz.save(model, "model.dzip")
    model = dz.load("model.dzip")
"""
__version__ = "0.1.0"

from .errors import ConfigError, DataError, DeepzipError, DzipFormatError, ModelMismatchError  # noqa: E402
from .load import load  # noqa: E402
from .models import create as create_model  # noqa: E402
from .prune import MagnitudePruning, prune_, prune_dead_inputs_, prune_units_, sparsity_of  # noqa: E402
from .quantize import KMeans, round_, share_weights_, strip_  # noqa: E402
from .report.tables import inspect  # noqa: E402
from .store import save  # noqa: E402
from .train import evaluate, predict, train  # noqa: E402

__all__ = [
    "ConfigError", "DataError", "DeepzipError", "DzipFormatError", "ModelMismatchError",
    "KMeans", "MagnitudePruning", "create_model", "evaluate", "inspect", "load", "predict",
    "prune_", "prune_dead_inputs_", "prune_units_", "round_", "save", "share_weights_", "sparsity_of", "strip_", "train",
]
