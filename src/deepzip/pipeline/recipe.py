"""Recipes: every setting of a compression run, as frozen dataclasses that load from YAML.

A recipe states only what it changes: it is laid over deepzip's recipe for its model (the one
`deepzip compress --model M` uses), stage by stage, so an empty recipe means the defaults and
`prune: null` turns a stage off. Per-layer settings (a `sparsity` dict, say) replace the
default's whole. Unknown keys and impossible values are rejected with the key's full path and
the value as written, before anything runs, so a typo never silently falls back to a default.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ..checks import check, check_each, is_amount, whole
from ..distill import check_distillation
from ..dzip import check_index_bits
from ..errors import ConfigError, InvalidSetting
from ..files import write_text
from ..prune import UNITS_RULE, MagnitudePruning, check_schedule
from ..quantize import KMeans, check_rate
from ..structured import check_channels
from ..train.config import TrainConfig
from .settings import build, nested
from .stage import added_from_dict, added_to_dict, check_added, place

PerLayer = float | dict[str, float] | None  # a recipe's per-layer setting, as YAML gives it


# A recipe's training settings are the API's own: what dz.train(config=...) takes.
TrainStage = TrainConfig


@dataclass(frozen=True)
class PruneStage:
    """How to prune; whichever schedule, the training budget is steps × retrain.epochs epochs.

    schedule "iterative": `steps` rounds, each pruning further along a cubic ramp to the target
    (Zhu & Gupta's curve, so early rounds take the most), then retraining `retrain.epochs`.
    schedule "agp": one run of steps × retrain.epochs epochs during which the masks follow the
    cubic ramp, updated every `every` optimizer steps, reaching the target at `ramp_end` of the run.
    schedule "direct": prune to the target at once, then retrain for the whole budget (the
    one-shot baseline that iterative pruning is compared against).
    """
    sparsity: PerLayer = None
    quality: PerLayer = None
    steps: int = 3
    retrain: TrainStage = field(default_factory=lambda: TrainStage(epochs=2, lr=5e-4))
    schedule: Literal["iterative", "agp", "direct"] = "iterative"
    ramp_end: float = 0.75
    every: int = 50
    scope: Literal["layer", "global"] = "layer"  # global: one magnitude threshold across all layers
    # Fraction of output units (neurons, filters) removed per layer before magnitude pruning;
    # the next layer's columns they fed go with them (prune/structured.py).
    units: PerLayer = None

    def __post_init__(self) -> None:
        check(whole(1)(self.steps), "steps", "≥ 1", self.steps)
        check_schedule(self.ramp_end, self.every)
        check_each(self.units, "units", UNITS_RULE, is_amount)
        if self.sparsity is not None or self.quality is not None:  # units alone prune no magnitudes
            self.pruning()
        check(self.schedule != "agp" or self.quality is None, "schedule", "iterative or direct with quality",
              self.schedule)

    def pruning(self, sparsity: PerLayer = None) -> MagnitudePruning:
        """The API's config for this stage's magnitude pruning (with `sparsity`: a round's, on the
        way to the target): what prune_ takes, and what checks these settings."""
        if sparsity is not None:
            return MagnitudePruning(sparsity=sparsity, scope=self.scope)
        return MagnitudePruning(quality=self.quality, sparsity=self.sparsity, scope=self.scope)


@dataclass(frozen=True)
class ChannelStage:
    """Structured pruning that removes channels for real (deepzip.structured), before anything
    else prunes or shares: `iterations` rounds of remove → retrain `retrain.epochs`, the total
    removed following the cubic ramp to `amount` (a fraction of each layer's channels; with
    select "global" of all channels), or for select "knapsack" to the `budget` ({"params": f} or
    {"flops": f}: the fraction of the model kept). `importance`: l1, l2, apoz or taylor (the
    last two measured on the training data); `ignore`: layers whose channels stay; `round_to`:
    every layer keeps a multiple of this many channels (rank and global; 8 suits CPU kernels)."""
    amount: float | dict[str, float] | None = 0.5
    importance: Literal["l1", "l2", "apoz", "taylor"] = "l1"
    select: Literal["rank", "global", "knapsack"] = "rank"
    budget: dict[str, float] | None = None
    iterations: int = 1
    retrain: TrainStage = field(default_factory=lambda: TrainStage(epochs=2, lr=1e-3))
    ignore: list[str] = field(default_factory=list)
    round_to: int = 1

    def __post_init__(self) -> None:
        check(whole(1)(self.iterations), "iterations", "≥ 1", self.iterations)
        check_channels(self.amount, self.select, self.budget, self.round_to)


@dataclass(frozen=True)
class ShareStage:
    """Weight sharing, then centroid fine-tuning. bias_bits shares each layer's biases too, with
    its own codebook of 2^bias_bits − 1 values, fine-tuned with the weights'; half_biases rounds
    the biases left unshared to float16 values afterwards, halving their bytes in the file, and
    half_codebooks the centroids (the accuracies reported are of the rounded model)."""
    bits: int | dict[str, int] | None = None
    init: Literal["linear", "density", "random"] = "linear"
    finetune: TrainStage = field(default_factory=lambda: TrainStage(epochs=1, lr=1e-4))
    half_biases: bool = False
    half_codebooks: bool = False
    bias_bits: int | dict[str, int] | None = None

    def __post_init__(self) -> None:
        self.kmeans()
        try:
            self.kmeans(bias=True)
        except InvalidSetting as e:  # the same rule, under this setting's own name
            raise InvalidSetting(e.key.replace("bits", "bias_bits", 1), e.rule, e.value) from None

    def kmeans(self, bias: bool = False) -> KMeans:
        """The API's config for sharing this stage's weights (or, `bias`, its biases): what
        share_weights_ takes, and what checks these settings."""
        return KMeans(bits=self.bias_bits if bias else self.bits, init=self.init)


@dataclass(frozen=True)
class RateStage:
    """Training for the file (deepzip.RateLoss), after pruning and before sharing: `train.epochs`
    of quantization-aware training (on the distillation loss, if the recipe distills) in which
    each weight of the layers `bits` names (2^bits − 1 centroids beside zero each; an int, or a
    dict by layer / kind / "default") takes the code that minimises its squared error plus
    `weight` × the code's cost in bits; then `dz.harden_` fixes those codes. Sparsity and
    codebook sizes are what training decided. The share stage that follows fine-tunes the
    codebooks, shares the layers rate left alone, and rounds to float16 as it says. Sweep
    `weight` with `deepzip compress --rate-weights`."""
    weight: float = 0.03
    bits: int | dict[str, int] = 4
    train: TrainStage = field(default_factory=lambda: TrainStage(epochs=6, lr=1e-3))

    def __post_init__(self) -> None:
        check_rate(self.weight, self.bits)


@dataclass(frozen=True)
class DistillStage:
    """Knowledge distillation.

    Without a `teacher`: the dense model teaches every training after the dense stage (pruning's
    retraining and the centroid fine-tuning): `weight` of the loss is the KL term to its outputs
    softened by `temperature`, the rest cross-entropy on the labels.

    With a `teacher` (a .dzip, or a safetensors checkpoint that records its architecture): the
    recipe's model is a student, trained in the dense stage by deepzip.DistillLoss with
    `weights` (λ1, λ2, λ3) on the backbone term (`alpha` of it soft targets), the `hints`
    ({student layer: teacher layer}) and the adversarial term (on "logits" or a hinted student
    layer, `adversary`); the later trainings then learn from the teacher's soft targets."""
    weight: float = 0.5
    temperature: float = 4.0
    teacher: str | None = None
    hints: dict[str, str] = field(default_factory=dict)
    weights: list[float] = field(default_factory=lambda: [1.0, 0.0, 0.0])
    alpha: float = 0.5
    adversary: str = "logits"

    def __post_init__(self) -> None:
        check_distillation(weight=self.weight, temperature=self.temperature, alpha=self.alpha, weights=self.weights)
        check(all(isinstance(k, str) and isinstance(v, str) for k, v in self.hints.items()), "hints",
              "a mapping of student layer names to teacher layer names", self.hints)


@dataclass(frozen=True)
class Recipe:
    model: str = "lenet300"
    model_args: dict[str, Any] = field(default_factory=dict)  # size knobs of the model, e.g. {width: 0.5}
    dataset: str = "fashion-mnist"
    image_size: int | None = None  # resize the data set's images to this (e.g. 32 for CIFAR networks)
    seed: int = 0
    dense: TrainStage = field(default_factory=lambda: TrainStage(epochs=10, lr=1e-3))
    channels: ChannelStage | None = None
    prune: PruneStage | None = field(default_factory=PruneStage)
    rate: RateStage | None = None
    share: ShareStage | None = field(default_factory=ShareStage)
    distill: DistillStage | None = None
    coder: Literal["huffman", "ans", "context", "auto"] = "huffman"
    index_bits: int | str | dict[str, int | str] | None = None
    # Stages from outside the package (pipeline.stage): (the built-in stage each runs after, its settings).
    added: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        check_index_bits(self.index_bits)
        object.__setattr__(self, "added", check_added(self.added))
        check(self.image_size is None or whole(1)(self.image_size), "image_size", "≥ 1", self.image_size)

    def replace(self, **changes: Any) -> Recipe:
        return dataclasses.replace(self, **changes)

    @classmethod
    def of(cls, stages: list[Any], **settings: Any) -> Recipe:
        """A recipe from its stages in the order they run: the built-in settings (TrainStage for the
        dense stage, ChannelStage, PruneStage, RateStage, ShareStage, in that order, each at most
        once) and registered stages anywhere between them. A built-in stage not listed is off
        (the dense stage keeps its default settings); `settings` are the rest (model, dataset, …).

        Examples:
            >>> Recipe.of([TrainStage(epochs=5), Probe(), ShareStage(bits=4)], model="lenet300")
        """
        built_in = {TrainStage: "dense", ChannelStage: "channels", PruneStage: "prune", RateStage: "rate",
                    ShareStage: "share"}
        fields, added = place(list(stages), built_in)
        off = {name: None for name in ("channels", "prune", "rate", "share") if name not in fields}
        return cls(**{**off, **fields, **settings, "added": added})

    def to_dict(self) -> dict[str, Any]:
        """Every setting as YAML holds it (added stages by their registered names)."""
        out = dataclasses.asdict(dataclasses.replace(self, added=()))
        out.pop("added")  # absent when empty: the run keys of recipes without added stages stay as they were
        return {**out, **({"added": added_to_dict(self.added)} if self.added else {})}

    def changes(self) -> dict[str, Any]:
        """Only the settings that differ from `Recipe()`'s, nested like to_dict: what a file
        records of its recipe (the full one costs ~3 % of a 10 KB LeNet file)."""
        default, mine = Recipe().to_dict(), self.to_dict()
        for name, cls in _optional_stages().items():  # off by default: when on, compare with its defaults
            if default[name] is None and mine[name] is not None:
                default[name] = dataclasses.asdict(cls())
        return _diff(mine, default)


def _diff(value: dict[str, Any], default: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, v in value.items():
        d = default.get(key)
        if isinstance(v, dict) and isinstance(d, dict) and key not in ("sparsity", "quality", "bits", "bias_bits", "units",
                                                                       "amount", "budget", "hints"):
            sub = _diff(v, d)
            if sub:
                out[key] = sub
        elif v != d:
            out[key] = v
    return out


def _optional_stages() -> dict[str, type]:
    """Recipe fields holding a stage that is off (None) by default: distill, channels, rate."""
    return {name: cls for name, cls in nested(Recipe).items() if getattr(Recipe(), name) is None}


# Fields holding settings of their own, at any depth of a recipe.
_STAGES = frozenset(name for cls in (Recipe, *nested(Recipe).values()) for name in nested(cls))


# Settings that replace each other: a recipe naming one drops the default's other.
_ALTERNATIVES = ({"sparsity", "quality"},)


def _over(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for pair in _ALTERNATIVES:
        named = pair & set(changes)
        if len(named) == 1:
            for other in pair - named:
                out.pop(other, None)
    for key, value in changes.items():
        if key in _STAGES and isinstance(value, dict) and isinstance(base.get(key), dict):
            out[key] = _over(base[key], value)
        else:
            out[key] = value
    return out


def _defaults(model: Any) -> dict[str, Any]:
    return {"model": model, **_DEFAULTS.get(model, _GENERIC)} if isinstance(model, str) else {}


def from_dict(data: dict[str, Any], **overrides: Any) -> Recipe:
    """A recipe from a mapping that states what it changes from deepzip's recipe for its model.

    Args:
        data: the recipe's settings (as YAML would give them); an empty mapping is the defaults.
        **overrides: top-level settings that win over `data` (model, dataset, seed, coder), as the
            command line's options do; the defaults are those of the model in force.

    Examples:
        >>> from_dict({"prune": {"steps": 5}}).prune.sparsity   # lenet300's default sparsities
        {'fc1': 0.95, 'fc2': 0.9, 'fc3': 0.7}
    """
    if not isinstance(data, dict):
        raise ConfigError(f"Invalid recipe: the recipe must be a mapping, not {type(data).__name__}.")
    data = {**data, **{k: v for k, v in overrides.items() if v is not None}}
    added = added_from_dict(data.pop("added"), build) if "added" in data else ()
    return build(Recipe, _over(_defaults(data.get("model", "lenet300")), data), "").replace(added=added)


def load_recipe(path: str | Path, **overrides: Any) -> Recipe:
    """Read a YAML recipe (see from_dict for how it combines with the defaults and overrides).

    Examples:
        >>> load_recipe("recipes/best-lenet300.yaml", seed=1)
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"Recipe file not found: {path}.") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"Recipe {path} is not valid YAML: {str(e).splitlines()[0]}.") from None
    except IsADirectoryError:
        raise ConfigError(f"Recipe {path} is a directory, not a YAML file.") from None
    return from_dict({} if data is None else data, **overrides)


def student_recipe(student: str, teacher: str | Path, *, recipe: str | Path | None = None,
                   model_args: dict[str, Any] | None = None, hints: dict[str, str] | None = None,
                   weights: list[float] = (1.0, 0.0, 0.0), temperature: float = 4.0, alpha: float = 0.5,
                   adversary: str = "logits", epochs: float = 10, lr: float = 1e-3,
                   dataset: str = "fashion-mnist", image_size: int | None = None) -> Recipe:
    """The recipe of `deepzip distill`: the student's dense stage trained by the three-part loss
    from `teacher`; with `recipe`, its later stages too (which learn from the teacher's soft
    targets as that recipe's distill.weight says), else nothing after the student's training.

    Examples:
        >>> student_recipe("resnet18", "teacher.dzip", model_args={"width": 0.125}, hints={"layer3": "layer3"})
    """
    distill = {"teacher": str(teacher), "hints": dict(hints or {}), "weights": list(weights),
               "temperature": temperature, "alpha": alpha, "adversary": adversary}
    changes = {"model": student, "model_args": dict(model_args or {}), "dataset": dataset,
               "image_size": image_size}
    if recipe is None:
        return from_dict({**changes, "dense": {"epochs": epochs, "lr": lr}, "distill": {**distill, "weight": 0.0},
                          "prune": None, "share": None})
    base = load_recipe(find_recipe(recipe), model=student).to_dict()
    return from_dict({**base, **changes, "distill": {**(base["distill"] or {}), **distill},
                      "dense": {**base["dense"], "epochs": epochs, "lr": lr}})


SHIPPED = Path(__file__).resolve().parents[1] / "recipes"


def find_recipe(recipe: str | Path) -> Path:
    """A recipe file by path, or by the name of one deepzip ships ("best-lenet300").

    Examples:
        >>> find_recipe("best-lenet300").name
        'best-lenet300.yaml'
    """
    path = Path(recipe)
    if path.is_file() or path.suffix in (".yaml", ".yml") or "/" in str(recipe):
        return path
    shipped = SHIPPED / f"{recipe}.yaml"
    if shipped.is_file():
        return shipped
    raise ConfigError(f"Recipe not found: {recipe} is neither a file nor a shipped recipe "
                      f"({', '.join(name for name, _ in shipped_recipes())}).")


def shipped_recipes() -> list[tuple[str, str]]:
    """(name, what it is in a line) of every recipe deepzip ships, from each file's first comment.

    Examples:
        >>> dict(shipped_recipes())["best-lenet300"]
        "deepzip's recipe for LeNet-300-100. ..."
    """
    out = []
    for path in sorted(SHIPPED.glob("*.yaml")):
        first = next((line.lstrip("# ").strip() for line in path.read_text().splitlines() if line.startswith("#")), "")
        out.append((path.stem, first))
    return out


def save_recipe(recipe: Recipe, path: str | Path) -> None:
    """Write every setting of `recipe` as YAML, atomically (load_recipe reads it back).

    Examples:
        >>> save_recipe(default_recipe("lenet5"), "my-lenet5.yaml")
    """
    write_text(path, yaml.safe_dump(recipe.to_dict(), sort_keys=False))




# deepzip's default recipe per model: the settings `deepzip compress` uses without --recipe.
_DEFAULTS: dict[str, dict[str, Any]] = {
    # Measured on Fashion-MNIST by `make demo` (README): 51.2× at −0.39 points from the dense model.
    "lenet300": {
        "coder": "auto", "index_bits": "auto",
        "dense": {"epochs": 12, "lr": 1e-3},
        "prune": {"sparsity": {"fc1": 0.95, "fc2": 0.9, "fc3": 0.7}, "steps": 3,
                  "retrain": {"epochs": 3, "lr": 1e-3}},
        "share": {"bits": 5, "finetune": {"epochs": 2, "lr": 1e-4}},
    },
    # Measured on Fashion-MNIST (README): 58× at −0.38 points from the dense model.
    "lenet5": {
        "coder": "auto", "index_bits": "auto",
        "dense": {"epochs": 8, "lr": 1e-3},
        "prune": {"sparsity": {"conv1": 0.4, "conv2": 0.85, "fc1": 0.96, "fc2": 0.8}, "schedule": "agp",
                  "steps": 3, "retrain": {"epochs": 2, "lr": 1e-3}},
        "share": {"bits": {"conv": 8, "linear": 5}, "finetune": {"epochs": 1, "lr": 1e-4}, "half_biases": True},
    },
}


_GENERIC: dict[str, Any] = {"prune": {"sparsity": {"linear": 0.9, "conv": 0.7}}}


def default_recipe(model: str) -> Recipe:
    """deepzip's tuned recipe for a registry model, or generic settings for any other.

    Examples:
        >>> default_recipe("lenet5").prune.schedule
        'agp'
    """
    return from_dict({"model": model})
