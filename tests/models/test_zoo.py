"""Every registry model: shapes at both data set geometries, documented sizes, and the whole
prune → share → save → load path on a small variant."""
import pytest
import torch

import deepzip
from deepzip.models import create, names

# A few-kB version of each model: same layers, fewer channels or blocks.
TINY = {
    "lenet300": {}, "lenet5": {}, "lenet5-fire": {},
    "vgg16": {"width": 0.125}, "vgg19": {"width": 0.125}, "vgg16-fire": {"width": 0.125},
    "resnet18": {"width": 0.125}, "resnet50": {"width": 0.125},
    "densenet100": {"depth": 10, "growth": 4},
    "squeezenet": {"width": 0.125},
}

# Parameters of the default configurations: (in_channels, image_size) → count, at 10 classes.
PARAMS = {
    "lenet300": ((1, 28), 266_610),
    "lenet5": ((1, 28), 431_080),
    "lenet5-fire": ((3, 32), 30_846),
    "vgg16": ((3, 32), 14_724_042),
    "vgg19": ((3, 32), 20_035_018),
    "vgg16-fire": ((3, 32), 1_349_594),
    "resnet18": ((3, 32), 11_173_962),
    "resnet50": ((3, 32), 23_520_842),
    "densenet100": ((3, 32), 769_162),
    "squeezenet": ((3, 32), 727_626),
}

GEOMETRIES = [(1, 28), (3, 32)]


def _tiny(name, channels, size, classes=10):
    if name not in TINY:
        pytest.fail(f"model {name!r} has no tiny variant in TINY")
    return create(name, in_channels=channels, image_size=size, classes=classes, **TINY[name])


def _count(name, channels, size, **kwargs):
    # On the meta device: no memory or init for 20 M weights, and it proves load's meta build works.
    with torch.device("meta"):
        model = create(name, in_channels=channels, image_size=size, classes=10, **kwargs)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", names())
@pytest.mark.parametrize("channels,size", GEOMETRIES)
def test_output_shape_and_recorded_arch(name, channels, size):
    model = _tiny(name, channels, size, classes=7)
    assert model(torch.randn(3, channels, size, size)).shape == (3, 7)
    assert model.deepzip_arch == {"name": name, "kwargs": {"in_channels": channels, "image_size": size,
                                                           "classes": 7, **TINY[name]}}


@pytest.mark.parametrize("name", names())
def test_default_parameter_count(name):
    (channels, size), expected = PARAMS[name]
    assert _count(name, channels, size) == expected


def test_fire_versions_are_much_smaller():
    assert _count("lenet5-fire", 1, 28) < _count("lenet5", 1, 28) / 4
    assert _count("vgg16-fire", 3, 32) < _count("vgg16", 3, 32) / 10


def test_pools_adapt_to_small_images():
    for name in ("vgg16", "vgg16-fire", "resnet18", "squeezenet", "densenet100"):
        model = create(name, in_channels=1, image_size=16, **TINY[name])
        assert model(torch.randn(2, 1, 16, 16)).shape == (2, 10)


@pytest.mark.parametrize("name,kwargs", [
    ("densenet100", {"depth": 12}), ("densenet100", {"depth": 4}), ("vgg16", {"width": 0}),
    ("squeezenet", {"width": -1.0}), ("lenet5-fire", {"pct3x3": 1.0}), ("vgg16-fire", {"squeeze_ratio": 0}),
])
def test_bad_size_knobs_are_refused(name, kwargs):
    with pytest.raises(ValueError):
        create(name, **kwargs)


# One geometry is enough here: what save and load see does not depend on the image size.
@pytest.mark.parametrize("name", names())
def test_compressed_round_trip_is_exact(name, tmp_path):
    channels, size = 3, 32
    model = _tiny(name, channels, size)
    model.train()
    with torch.no_grad():  # moves batch-norm statistics off their 0/1 start, so buffers are tested
        model(torch.randn(8, channels, size, size) * 2 + 1)
    deepzip.prune_(model, sparsity=0.5)
    deepzip.share_weights_(model, bits=4)
    model.eval()
    x = torch.randn(5, channels, size, size)
    with torch.no_grad():
        expected = model(x)
    deepzip.save(model, tmp_path / "m.dzip")
    loaded = deepzip.load(tmp_path / "m.dzip")
    with torch.no_grad():
        got = loaded(x)
    assert torch.equal(got.argmax(1), expected.argmax(1))
    assert torch.equal(got, expected)
    buffers = dict(model.named_buffers())
    for key, value in loaded.named_buffers():
        assert torch.equal(value, buffers[key]), key
    if any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()):
        assert any(k.endswith("running_mean") and v.abs().sum() > 0 for k, v in loaded.named_buffers())
