"""Compressing a pretrained model without retraining: calibrate, allocate, round, write.

    result = dz.compress_pretrained(model, calib, test, val_data=val, metric="cosine", max_drop=0.001)

1. calibrate   the calibration samples through the float model once (quantize/calibrate.py):
               each linear layer's input Hessian, every weight's Fisher diagonal.
2. scan        each weight tensor rounded alone at a reference step, the rest float: its drop on
               the scan samples (a slice of the calibration set) is its sensitivity s_t.
3. allocate    entropy-coded uniform rounding costs about n_t·(h_t − log2 step_t) bits for an
               error of about s_t·step_t²: the steps that spend the fewest bits for a given total
               error (a Lagrangian, as the knapsack's) are step_t ∝ √(n_t / s_t). One knob k
               scales them all, bisected on the validation samples to the largest k whose drop
               (plus `confidence` standard errors) is within `max_drop`, or to a size in bits.
4. write       every tensor shared at its step (GPTQ-rounded, scaled rows), saved, loaded back;
               the test samples are read once, for that file.

Calibration, validation and test samples are disjoint: the caller passes them apart. A killed
run resumes: the scan and every bisection step are kept in OUT/ptq.json.
"""
from __future__ import annotations

import copy
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..dzip import load, save
from ..dzip.spec import STREAM_KEYS
from ..errors import ConfigError, DeepzipWarning
from ..files import write_text
from ..quantize.calibrate import calibrate
from ..quantize.ptq import PostTraining, Target, entropy_bits, levels, rounded, scale_bits, share_levels_, target_steps, targets
from ..train.metrics import metric_of


@dataclass(frozen=True)
class PtqConfig:
    """The post-training search.

    max_drop: the most the metric may drop on validation (cosine: 1 − mean cosine; perplexity:
        % rise; top-1: points). Or `bits`: the mean coded bits per weight of the rounded tensors,
        as their levels' entropy estimates it while searching (the file adds its code tables:
        a few percent on a small model).
    rounding: how each tensor is rounded (PostTraining).
    scan_step: the step (in units of a tensor's rms) at which sensitivities are measured.
    step_range: the smallest and largest step a tensor may get.
    search_steps: bisection steps of the knob.
    confidence: standard errors added to a validation drop before it is compared with max_drop.
    probes: Fisher probes per calibration batch, where the scan or the rows need the Fisher
        information.
    scan: "measure" (each tensor rounded alone, its drop on `scan_samples` calibration samples:
        a forward pass per tensor) or "fisher" (the drop its rows' Fisher information predicts:
        no forward pass, for models where a pass per tensor costs too much).
    scan_samples: calibration samples the measured scan scores each tensor on.

    Examples:
        >>> PtqConfig(max_drop=0.001), PtqConfig(bits=3.0)
    """

    max_drop: float | None = None
    bits: float | None = None
    rounding: PostTraining = field(default_factory=PostTraining)
    scan_step: float = 0.5
    step_range: tuple[float, float] = (0.002, 3.0)
    search_steps: int = 8
    confidence: float = 0.84
    probes: int = 1
    scan: str = "measure"
    scan_samples: int = 128

    def __post_init__(self) -> None:
        if (self.max_drop is None) == (self.bits is None):
            raise ConfigError("post-training compression needs one target: max_drop (a fidelity) or bits (a size).")
        if self.max_drop is not None and not (math.isfinite(self.max_drop) and self.max_drop > 0):
            raise ConfigError(f"max_drop must be a positive number, not {self.max_drop!r}.")
        if self.bits is not None and not (math.isfinite(self.bits) and 0.05 <= self.bits <= 16):
            raise ConfigError(f"bits must be a number of bits per weight from 0.05 to 16, not {self.bits!r}.")
        if self.scan not in ("measure", "fisher"):
            raise ConfigError(f"scan must be 'measure' or 'fisher', not {self.scan!r}.")
        if self.probes < 1 and (self.scan == "fisher" or self.rounding.rows != "rms"):
            raise ConfigError("a Fisher scan or Fisher-shaped rows need probes ≥ 1.")
        lo, hi = self.step_range
        if not (0 < lo < self.scan_step < hi) or self.search_steps < 1 or self.confidence < 0:
            raise ConfigError("PtqConfig needs 0 < step_range[0] < scan_step < step_range[1], search_steps ≥ 1 and "
                              "confidence ≥ 0.")


@dataclass(frozen=True)
class PtqResult:
    """What `compress_pretrained` made: the file, its size against float32, and its drops.

    validation / test: {"drop", "se"} of the file against the float model (test: None without
    test data); steps: each tensor's step; bits_per_weight: the rounded tensors' bits per weight
    in the file (their streams: codes, codebooks, scales); history: every bisection step {k,
    drop, se, bits (estimated from the levels' entropy)}; seconds: the whole run, and `timings`
    its phases (calibrate, scan, search, write, score).
    """

    path: Path
    file_bytes: int
    dense_bytes: int
    ratio: float
    metric: str
    validation: dict[str, float | None]
    test: dict[str, float | None] | None
    steps: dict[str, float]
    bits_per_weight: float
    history: list[dict[str, float | None]]
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)


class _State:
    """OUT/ptq.json: the scan's sensitivities and the bisection's steps, so a killed run resumes."""

    def __init__(self, path: Path, key: dict[str, Any], resume: bool) -> None:
        self.path, self.data = path, {"key": key, "scan": {}, "history": []}
        if resume and path.exists():
            data = json.loads(path.read_text())
            if data.get("key") == key:
                self.data = data

    def save(self) -> None:
        write_text(self.path, json.dumps(self.data, indent=1))


def predicted_drop(t: Target, error: torch.Tensor) -> float:
    """The output error a weight error should cause, from calibration alone (no forward pass):
    Σ_r F_r · e_r H e_rᵀ / mean diag H for a linear layer (GPTQ's errors cancel along H), and
    Σ_r F_r · ‖e_r‖² otherwise, with F_r the row's Fisher information (calibrate.py)."""
    e = error.detach().double().reshape(error.shape[0], -1)
    if t.hessian is not None:
        per_row = ((e @ t.hessian) * e).sum(1) / float(t.hessian.diagonal().mean().clamp_min(1e-30))
    else:
        per_row = e.pow(2).sum(1)
    return float((t.fisher.double() * per_row).sum())


def _scan(model: nn.Module, reference: nn.Module, found: list[Target], metric, data, cfg: PtqConfig,
          state: _State, progress: bool) -> dict[str, float]:
    """Each tensor's sensitivity per step² (≥ 1e-12 of the largest): its drop when rounded alone at
    `scan_step` (measured on `data`), or the drop its Fisher information predicts (cfg.scan)."""
    scan = state.data["scan"]
    blind = [t.name for t in found if t.fisher is None]
    if cfg.scan == "fisher" and blind:
        raise ConfigError(f"scan='fisher' needs the Fisher information of every weight, and {', '.join(blind[:3])} "
                          f"(convolutions) have none; use scan='measure'.")
    for t in tqdm(found, desc="scan", disable=None if progress else True, leave=False):
        if t.name in scan:
            continue
        original = t.weight.detach().clone()
        with torch.no_grad():
            value = _round_into(t, original, cfg.scan_step, cfg)[0]
            if cfg.scan == "fisher":
                drop = predicted_drop(t, value - original)
            else:
                t.weight.copy_(value)
                drop, _ = metric.paired(reference, model, data)
                t.weight.copy_(original)
        scan[t.name] = max(float(drop), 0.0) / cfg.scan_step**2
        state.save()
    floor = 1e-12 * max([*(scan[t.name] for t in found), 1e-30])
    return {t.name: max(scan[t.name], floor) for t in found}


def _steps(k: float, found: list[Target], sens: dict[str, float], cfg: PtqConfig) -> dict[str, float]:
    lo, hi = cfg.step_range
    return {t.name: min(max(k * math.sqrt(t.weight.numel() / sens[t.name]), lo), hi) for t in found}


@torch.no_grad()
def _round_into(t: Target, original: torch.Tensor, step: float, cfg: PtqConfig):
    """(rounded weight, levels, row steps) of `original` at `step`; the target holds `original`
    while it is rounded (GPTQ reads the weight), and keeps it."""
    rows = target_steps(t, step, cfg.rounding, original)
    t.weight.copy_(original)
    q = levels(t, rows, cfg.rounding)
    return rounded(q, rows), q, rows


def _round_all(found: list[Target], originals: dict[str, torch.Tensor], steps: dict[str, float],
               cfg: PtqConfig) -> float:
    """Round every tensor at its step into the model's weights; the estimated coded bits."""
    bits = 0.0
    with torch.no_grad():
        for t in found:
            value, q, _ = _round_into(t, originals[t.name], steps[t.name], cfg)
            t.weight.copy_(value)
            bits += entropy_bits(q) + scale_bits(q)
    return bits


def _bisect(model, reference, found, originals, sens, metric, val, cfg: PtqConfig, state: _State,
            progress: bool, log) -> float:
    """The knob k, by bisection on log k: the largest whose drop meets max_drop, or the smallest
    whose bits meet `bits`. Every step is kept in the state. When the first step misses a drop
    target, the finest end is measured next: a target out of reach is said at once, with the
    best drop there is, instead of after every step."""
    weights = sum(t.weight.numel() for t in found)
    lo, hi = cfg.step_range
    ks = [s / math.sqrt(t.weight.numel() / sens[t.name]) for t in found for s in (lo, hi)]
    a, b = math.log(min(ks)), math.log(max(ks))
    done = {round(h["log_k"], 9): h for h in state.data["history"]}

    def measure(log_k: float) -> dict:
        h = done.get(round(log_k, 9))
        if h is None:
            bits = _round_all(found, originals, _steps(math.exp(log_k), found, sens, cfg), cfg)
            drop, se = metric.paired(reference, model, val) if cfg.max_drop is not None else (None, None)
            h = done[round(log_k, 9)] = {"log_k": log_k, "k": math.exp(log_k), "drop": drop, "se": se,
                                          "bits": bits / weights}
            state.data["history"].append(h)
            state.save()
            log(f"k={h['k']:.3g}: {h['bits']:.2f} bits/weight"
                + (f", drop {drop:.5f} ± {se or 0:.5f}" if drop is not None else ""))
        return h

    def meets(h: dict) -> bool:
        if cfg.bits is not None:
            return h["bits"] <= cfg.bits
        return h["drop"] + cfg.confidence * (h["se"] or 0) <= cfg.max_drop

    best = None
    for i in tqdm(range(cfg.search_steps), desc="search", disable=None if progress else True, leave=False):
        mid = (a + b) / 2
        if meets(measure(mid)):
            a, b, best = (mid, b, mid) if cfg.bits is None else (a, mid, mid)
        else:
            a, b = (a, mid) if cfg.bits is None else (mid, b)
            if i == 0 and cfg.bits is None:
                if not meets(measure(a)):
                    break
                best = a  # the finest meets: anything coarser that meets replaces it
    if best is None:
        raise ConfigError(_unreachable(cfg, [h for h in done.values() if h.get("drop") is not None]))
    return math.exp(best)


def _unreachable(cfg: PtqConfig, history: list[dict]) -> str:
    """The sentence for a target no step meets, with the best the search saw."""
    lo, hi = cfg.step_range
    if cfg.bits is not None:
        return f"no step gives {cfg.bits} bits per weight or fewer, even the coarsest ({hi}); ask for more."
    least = min(history, key=lambda h: h["drop"])
    why = (f" (code_bits={cfg.rounding.code_bits} allows no finer grid: more code bits reach further)"
           if cfg.rounding.code_bits else "")
    return (f"no step keeps the drop within {cfg.max_drop}: the finest measured drops {least['drop']:.5g} ± "
            f"{least['se'] or 0:.2g} on validation{why}; ask for a looser one.")


def compress_pretrained(model: nn.Module, calib_data: Any, eval_data: Any = None, *, val_data: Any,
                        metric: Any = "cosine", config: PtqConfig, out: str | os.PathLike = "out/ptq",
                        resume: bool = False, progress: bool = True,
                        log: Callable[[str], Any] = print) -> PtqResult:
    """Compress a pretrained model in minutes, without retraining, to the smallest file within
    `config.max_drop` of the float model on `val_data` (or to `config.bits` bits per weight).

    Args:
        model: the float model; it ends holding the file's weights (shared, with scaled rows).
        calib_data: calibration batches or a Dataset (inputs; labels are not read).
        eval_data: test samples, read once for the file chosen (None: no test figure).
        val_data: validation samples the target is met on, disjoint from both.
        metric: "cosine" (encoders), "perplexity" (language models), "top1", or a Metric.
        config: the target and how to reach it (PtqConfig).
        out: the run's directory: model.dzip, ptq.json (resume state and history).
        resume: continue a killed run from OUT/ptq.json.
        progress: progress bars over the calibration, the scan and the search.
        log: called with one line per search step.

    Examples:
        >>> r = dz.compress_pretrained(encoder, calib, test, val_data=val, metric="cosine",
        ...                            config=PtqConfig(max_drop=0.001))
        >>> r.ratio, r.test["drop"]
    """
    start = time.perf_counter()
    clock = _Clock()
    metric = metric_of(metric)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    batches = _batches(calib_data)
    state = _State(out / "ptq.json", {"config": _jsonable(asdict(config)), "metric": metric.name}, resume)
    reference = copy.deepcopy(model).eval()  # the one copy: the float model every drop is measured against
    for p in reference.parameters():
        p.requires_grad_(False)
    fisher = config.scan == "fisher" or config.rounding.rows != "rms"
    cal = calibrate(model, batches, probes=config.probes if fisher else 0, progress=progress)
    clock.lap("calibrate")
    found = targets(model, cal, config.rounding)
    if not found:
        raise ConfigError("the model has no weight matrix to quantize (linear, convolution or embedding layers).")
    # The float weights are the reference model's: no third copy of the model.
    originals = {t.name: reference.get_parameter(t.name).detach() for t in found}
    scan_data = _first(calib_data, config.scan_samples)
    sens = _scan(model, reference, found, metric, scan_data, config, state, progress)
    clock.lap("scan")
    k = _bisect(model, reference, found, originals, sens, metric, val_data, config, state, progress, log)
    clock.lap("search")
    steps = _steps(k, found, sens, config)
    return _finish(model, reference, found, originals, steps, metric, val_data, eval_data, config, out,
                   state, start, clock)


class _Clock:
    """Seconds per phase, for the report."""

    def __init__(self) -> None:
        self.last, self.laps = time.perf_counter(), {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self.last, 2)
        self.last = now


def _coded_bits(header: dict, names: set[str]) -> int:
    """The bits the streams of the named tensors take in the file written."""
    return 8 * sum(header["streams"][e[key]]["length"] for e in header["tensors"] if e.get("name") in names
                   and "alias" not in e for key in STREAM_KEYS if key in e)


def _finish(model, reference, found, originals, steps, metric, val, test, cfg: PtqConfig, out: Path,
            state: _State, start: float, clock: _Clock) -> PtqResult:
    """Share every tensor at its step, write the file, load it back and score it."""
    for t in found:
        _, q, rows = _round_into(t, originals[t.name], steps[t.name], cfg)
        share_levels_(t, q, rows)
    path = out / "model.dzip"
    with warnings.catch_warnings():  # tables of fewer than min_rows rows stay float on purpose
        warnings.simplefilter("ignore", DeepzipWarning)
        header = save(model, path, metadata={"post_training": {"metric": metric.name, "steps": steps}})
    clock.lap("write")
    # A file that records its architecture rebuilds itself; one that does not fills a copy of the reference.
    loaded = load(path) if header.get("arch") is not None else load(path, model=copy.deepcopy(reference))
    loaded.eval()
    drop, se = metric.paired(reference, loaded, val)
    tested = None
    if test is not None:  # read once, for this file
        t_drop, t_se = metric.paired(reference, loaded, test)
        tested = {"drop": t_drop, "se": t_se}
    clock.lap("score")
    dense = 4 * sum(p.numel() for p in reference.parameters())
    weights = sum(t.weight.numel() for t in found)
    bits = _coded_bits(header, {t.name for t in found})
    result = PtqResult(path, header["file_bytes"], dense, dense / header["file_bytes"], metric.name,
                       {"drop": drop, "se": se}, tested, steps, bits / weights, state.data["history"],
                       time.perf_counter() - start, clock.laps)
    write_text(out / "report.json", json.dumps(_jsonable(asdict(result)), indent=1))
    return result


def _batches(data: Any) -> list[Any]:
    from ..data import Dataset

    if isinstance(data, Dataset):
        return [data.x[i:i + 32] for i in range(0, len(data), 32)]
    return list(data)


def _first(data: Any, n: int) -> Any:
    from ..data import Dataset

    if isinstance(data, Dataset):
        return Dataset(data.x[:n], data.y[:n], data.classes, data.name)
    return data


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
