"""Stages from outside the package: the protocol, the registry, and how a recipe holds them.

A stage is a frozen dataclass (its settings, which validate themselves in `__post_init__`) with a
`run(ctx, resume)` method, registered under a name with `@stage`. It runs inside a compress run
like the built-in stages (dense, channels, prune, rate, share): it is given the run's context,
is timed, checkpointed after it ends, and resumed if the run is killed inside its training.

    from dataclasses import dataclass
    from deepzip.pipeline import Recipe, StageResult, stage, TrainStage

    @stage("probe")
    @dataclass(frozen=True)
    class Probe:
        retrain: TrainStage = TrainStage(epochs=1)

        def run(self, ctx, resume):
            ctx.fit(self.retrain, ctx.recipe.seed + 7, "probe", resume=resume)  # checkpoints every epoch
            return StageResult(scores={"val": ctx.score(ctx.model)})

    recipe = Recipe.of([TrainStage(epochs=5), Probe(), ShareStage(bits=5)], model="lenet300")

`ctx` is the run's RunContext (pipeline.context): `model`, `recipe`, `out`, `device`, `splits`,
`train_set`, `val_set`, `metric`, `score(model)`, `fit(...)` (the one way a stage trains:
validation, history, TensorBoard and a checkpoint after every epoch), `example(n)`, `log(line)`,
`teacher()` and `kd` (distillation, when the recipe asks for it). `resume` is None on a fresh
start, or what the checkpoint the stage was killed in holds: pass it to `ctx.fit`, and skip what
the stage did before its first epoch (its changes are in the restored model).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..errors import ConfigError

if TYPE_CHECKING:
    from .context import RunContext

# The built-in stages' names in the order a run takes them; an added stage runs after one of them.
BUILT_IN = ("dense", "channels", "prune", "rate", "share")


@dataclass(frozen=True)
class StageResult:
    """What a stage reports: `scores` (validation, by name; they join the run's scores as
    "STAGE.NAME"), `files` it wrote (by name, relative to the run's directory or absolute) and
    `notes` (anything JSON can hold), all kept in report.json under "stages".

    Examples:
        >>> StageResult(scores={"val": 88.1}, notes={"pruned": 1234})
    """

    scores: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    def record(self, name: str, seconds: float) -> dict[str, Any]:
        """This result as report.json keeps it."""
        return {"name": name, "seconds": seconds, "scores": {k: float(v) for k, v in self.scores.items()},
                "files": {k: str(v) for k, v in self.files.items()}, "notes": self.notes}


@runtime_checkable
class Stage(Protocol):
    """A stage's shape: a frozen dataclass of settings with `run(ctx, resume)`."""

    def run(self, ctx: RunContext, resume: dict[str, Any] | None) -> StageResult | None: ...


_REGISTRY: dict[str, type] = {}


def stage(name: str):
    """Register a frozen dataclass with a `run(ctx, resume)` method as the stage `name` (the key a
    recipe's `added` list names it by).

    Args:
        name: a name no built-in or other registered stage has.

    Examples:
        >>> @stage("probe")
        ... @dataclass(frozen=True)
        ... class Probe:
        ...     def run(self, ctx, resume):
        ...         return StageResult(scores={"val": ctx.score(ctx.model)})
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError(f"a stage's name must be an identifier, not {name!r}.")

    def register(cls: type) -> type:
        params = getattr(cls, "__dataclass_params__", None)
        if params is None or not params.frozen or not callable(getattr(cls, "run", None)):
            raise ConfigError(f"stage {name!r}: {cls.__name__} must be a frozen dataclass with a run(ctx, resume) "
                              f"method.")
        if name in BUILT_IN or _REGISTRY.get(name, cls).__qualname__ != cls.__qualname__:
            raise ConfigError(f"stage {name!r} is taken ({'built in' if name in BUILT_IN else _REGISTRY[name]!r}); "
                              f"choose another name.")
        _REGISTRY[name] = cls  # a module imported again re-registers its own class
        cls.stage_name = name
        return cls

    return register


def name_of(config: Any) -> str:
    """The registered name of a stage's settings (ConfigError if its class is not registered)."""
    name = getattr(type(config), "stage_name", None)
    if name is None or _REGISTRY.get(name) is not type(config):
        raise ConfigError(f"{type(config).__name__} is not a registered stage; decorate it with "
                          f"@deepzip.pipeline.stage(name).")
    return name


def check_added(added: Any) -> tuple[tuple[str, Any], ...]:
    """A recipe's added stages: (the built-in stage each follows, its registered settings)."""
    if not isinstance(added, (tuple, list)):
        raise ConfigError(f"Invalid recipe: added must be a list of (stage it follows, stage), not {added!r}.")
    out = []
    for i, item in enumerate(added):
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and item[0] in BUILT_IN):
            raise ConfigError(f"Invalid recipe: added[{i}] must be (one of {', '.join(BUILT_IN)}, a stage), "
                              f"not {item!r}.")
        name_of(item[1])
        out.append((item[0], item[1]))
    return tuple(out)


def added_to_dict(added: tuple[tuple[str, Any], ...]) -> list[dict[str, Any]]:
    """The added stages as a recipe's YAML holds them: {stage: NAME, after: BUILT-IN, **settings}."""
    return [{"stage": name_of(c), "after": after, **dataclasses.asdict(c)} for after, c in added]


def added_from_dict(items: Any, build) -> tuple[tuple[str, Any], ...]:
    """The inverse of added_to_dict; `build(cls, settings, where)` checks each stage's settings as
    a recipe's own (unknown keys refused with their path)."""
    if not isinstance(items, list):
        raise ConfigError(f"Invalid recipe: added must be a list, not {type(items).__name__}.")
    out = []
    for i, item in enumerate(items):
        where = f"added[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("stage"), str):
            raise ConfigError(f"Invalid recipe: {where} must be a mapping with a stage: NAME.")
        settings = {k: v for k, v in item.items() if k not in ("stage", "after")}
        cls = _REGISTRY.get(item["stage"])
        if cls is None:
            known = ", ".join(sorted(_REGISTRY)) or "none"
            raise ConfigError(f"Invalid recipe: {where}.stage {item['stage']!r} is not a registered stage (registered: "
                              f"{known}); a stage is registered when the module that defines it is imported.")
        out.append((item.get("after", "share"), build(cls, settings, where)))
    return check_added(out)


def place(configs: list[Any], built_in: dict[type, str]) -> tuple[dict[str, Any], tuple[tuple[str, Any], ...]]:
    """An ordered list of stage settings, split into the recipe's built-in fields and its added
    stages, each placed after the built-in stage before it (`built_in`: settings type → field).
    The built-in stages keep their one order; the first training settings are the dense stage's."""
    fields: dict[str, Any] = {}
    added, last = [], "dense"
    for i, config in enumerate(configs):
        what = built_in.get(type(config))
        if what is None:
            name_of(config)
            added.append((last, config))
            continue
        if what in fields or BUILT_IN.index(what) < BUILT_IN.index(last):
            raise ConfigError(f"Recipe.of: stage {i} ({type(config).__name__}) is out of place: the built-in stages run "
                              f"once each, in the order {', '.join(BUILT_IN)}.")
        fields[what], last = config, what
    return fields, tuple(added)

