from pathlib import Path

import pytest

import deepzip as dz
from deepzip.pipeline.recipe import Recipe, default_recipe, from_dict, load_recipe, save_recipe
from deepzip.prune import ramp
from deepzip.selection import select


def test_round_trip_through_yaml(tmp_path):
    r = default_recipe("lenet5")
    save_recipe(r, tmp_path / "r.yaml")
    assert load_recipe(tmp_path / "r.yaml") == r


@pytest.mark.parametrize("data, words", [
    ({"prnue": {}}, "unknown key prnue"),
    ({"prune": {"retrain": {"epoch": 3}}}, "unknown key prune.retrain.epoch"),
    ({"coder": "zip"}, "coder"),
    ({"dense": {"epochs": -1}}, "epochs"),
    ({"dense": {"lr": "fast"}}, "dense.lr"),
    ({"prune": {"steps": 0}}, "steps"),
    ({"index_bits": 40}, "index_bits"),
    ({"share": {"init": "kmeans++"}}, "share.init"),
    ({"dense": [1, 2]}, "dense must be a mapping"),
    ({"distill": {"weight": 1.5}}, "distill.weight"),
    ({"distill": {"temperature": 0}}, "distill.temperature"),
    ({"distill": {"beta": 0.5}}, "unknown key distill.beta"),
    ({"channels": {"round_to": 0}}, "channels.round_to"),
    ({"channels": {"select": "knapsack", "budget": {"params": 0.5}, "round_to": 8}}, "channels.round_to"),
    ({"distill": {"weights": [1, 2]}}, "distill.weights must be three numbers"),
    ({"prune": {"units": {"fc1": 1.5}}}, "prune.units.fc1 must be a fraction in"),
    ({"share": {"bias_bits": 0}}, "share.bias_bits"),
    ({"share": {"bits": {"fc1": 13}}}, "share.bits"),
    ({"share": {"bias_bits": True}}, "share.bias_bits"),
])
def test_bad_recipes_are_refused_with_the_key(data, words):
    with pytest.raises(dz.ConfigError, match=words.replace("+", r"\+")):
        from_dict(data)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(dz.ConfigError, match="not found"):
        load_recipe(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("prune: [unclosed")
    with pytest.raises(dz.ConfigError, match="not valid YAML"):
        load_recipe(tmp_path / "bad.yaml")


def test_ramp_is_cubic_and_reaches_the_target():
    values = [ramp(0.9, s, 4) for s in range(5)]
    assert values[0] == 0 and values[-1] == pytest.approx(0.9)
    assert values[1] == pytest.approx(0.9 * (1 - 0.75**3))
    steps = [b - a for a, b in zip(values, values[1:])]
    assert steps == sorted(steps, reverse=True)  # prunes most early, least late


def test_shipped_recipes_load():
    from pathlib import Path

    files = sorted(Path(__file__).parents[2].joinpath("recipes").glob("*.yaml"))
    assert {f.stem for f in files} >= {"paper-lenet300", "paper-lenet5", "best-lenet300", "best-lenet5", "best-resnet18"}

    def budget(r):
        return r.prune.steps * r.prune.retrain.epochs + r.share.finetune.epochs

    for f in files:
        r = load_recipe(f)
        # Every layer a recipe names is a layer of its model (a typo would stop the run after the dense stage).
        model = dz.create_model(r.model, image_size=r.image_size or 28, in_channels=1, **r.model_args)
        for setting in (r.prune.sparsity, r.prune.units, r.share.bits):
            select(model, setting, f.name)
        # A model's recipes spend the same epochs after the dense part: the paper's where there is one.
        same = f.with_name(f"paper-{r.model}.yaml")
        same = same if same.exists() else f.with_name(f"best-{r.model}.yaml")
        assert budget(r) == budget(load_recipe(same)), f.name


def test_global_scope_needs_one_sparsity():
    assert from_dict({"prune": {"sparsity": 0.9, "scope": "global"}}).prune.scope == "global"
    with pytest.raises(dz.ConfigError, match="global"):
        from_dict({"prune": {"sparsity": {"fc1": 0.9}, "scope": "global"}})


def test_changes_hold_only_what_differs_and_rebuild_the_recipe():
    r = load_recipe(Path(__file__).parents[2] / "recipes" / "best-lenet300.yaml")
    changes = r.changes()
    assert "seed" not in changes and "optimizer" not in changes["prune"]["retrain"]
    assert changes["prune"]["units"] == {"fc1": 0.667} and changes["distill"]["weight"] == 0.7
    full = Recipe().to_dict()  # what a file records is what differs from the bare dataclass

    def merge(into, diff):
        for k, v in diff.items():
            if isinstance(v, dict) and isinstance(into.get(k), dict) and k not in ("sparsity", "bits", "units"):
                merge(into[k], v)
            else:
                into[k] = v
    merge(full, changes)
    assert from_dict(full) == r
    assert Recipe().changes() == {}


def test_a_value_out_of_range_is_refused_as_written_with_its_key():
    with pytest.raises(dz.ConfigError, match=r"prune\.sparsity\.fc1 must be a fraction in \[0, 1\].*not 1\.5\."):
        from_dict({"prune": {"sparsity": {"fc1": 1.5, "fc2": 0.9}}})
    with pytest.raises(dz.ConfigError, match=r"prune\.retrain\.lr must be a finite number > 0, not -0\.1"):
        from_dict({"prune": {"retrain": {"lr": -0.1}}})


def test_a_recipe_states_only_what_it_changes():
    assert from_dict({}) == default_recipe("lenet300")
    ans = from_dict({"coder": "ans"})  # still prunes and shares as the defaults do
    assert ans.coder == "ans" and ans.prune == default_recipe("lenet300").prune
    steps = from_dict({"prune": {"steps": 5}}).prune  # a stage's other settings stay the default's
    assert steps.steps == 5 and steps.sparsity == default_recipe("lenet300").prune.sparsity
    assert from_dict({"prune": {"sparsity": {"fc1": 0.5}}}).prune.sparsity == {"fc1": 0.5}  # per layer: replaced
    assert from_dict({"prune": None}).prune is None  # null turns a stage off
    assert from_dict({}, model="lenet5") == default_recipe("lenet5")  # the overriding model's defaults


def test_layer_names_are_checked_against_the_model_before_anything_runs(tmp_path):
    from deepzip.pipeline import run_recipe

    out = tmp_path / "out"
    lenet300 = load_recipe(Path(__file__).parents[2] / "recipes" / "best-lenet300.yaml", model="lenet5",
                           dataset="synthetic")
    with pytest.raises(dz.ConfigError, match=r"prune\.sparsity names 'fc3', which is neither"):
        run_recipe(lenet300, out, limit=64, progress=False, log=lambda *a: None)
    with pytest.raises(dz.ConfigError, match="Unknown model 'lenet9'"):
        run_recipe(from_dict({"dataset": "synthetic"}, model="lenet9"), out, progress=False, log=lambda *a: None)
    assert not out.exists()


def test_naming_quality_replaces_the_default_sparsity():
    r = from_dict({"prune": {"quality": 0.8}})
    assert r.prune.quality == 0.8 and r.prune.sparsity is None
    assert from_dict({"prune": {"sparsity": 0.9}}).prune.quality is None


def test_stage_settings_give_the_apis_own_configs():
    """One config per concept: a recipe's prune and share stages hand prune_ and share_weights_
    the API's MagnitudePruning and KMeans (which also check them), not their fields one by one."""

    r = from_dict({"model": "lenet300", "prune": {"sparsity": {"fc1": 0.9}, "scope": "layer"},
                   "share": {"bits": {"linear": 4}, "bias_bits": 6, "init": "density"}})
    assert r.prune.pruning() == dz.MagnitudePruning(sparsity={"fc1": 0.9}, scope="layer")
    assert r.prune.pruning(0.5) == dz.MagnitudePruning(sparsity=0.5, scope="layer")
    assert r.share.kmeans() == dz.KMeans(bits={"linear": 4}, init="density")
    assert r.share.kmeans(bias=True) == dz.KMeans(bits=6, init="density")
    with pytest.raises(dz.DeepzipError, match="share.bias_bits"):
        from_dict({"share": {"bias_bits": 40}})
