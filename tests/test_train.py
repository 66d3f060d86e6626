"""Training with knowledge distillation."""
import copy

import pytest
import torch

import deepzip as dz
from deepzip.data import Dataset


def _data(n=512):
    x = torch.randn(n, 1, 8, 8)
    return Dataset(x, (x.flatten(1)[:, :4].argmax(1)), classes=4, name="random")


def test_a_student_equal_to_its_teacher_feels_no_soft_loss(tiny_mlp):
    teacher = copy.deepcopy(tiny_mlp)
    # SGD, not Adam: Adam would blow the float rounding left in a zero gradient up to full steps.
    losses = dz.train(tiny_mlp, _data(), epochs=1, lr=1e-1, optimizer="sgd",
                      loss_fn=dz.SoftTargetLoss(teacher, weight=1.0), progress=False)
    assert losses[0] == pytest.approx(0.0, abs=1e-6)
    for a, b in zip(tiny_mlp.parameters(), teacher.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_pure_distillation_copies_the_teachers_answers_not_the_labels(tiny_mlp):
    data = _data()
    teacher = dz.create_model("lenet300", in_channels=1, image_size=8, classes=4)
    teacher_says = dz.predict(teacher, data)  # an untrained teacher: its answers are not the labels
    assert (teacher_says == data.y).float().mean() < 0.6
    dz.train(tiny_mlp, data, epochs=20, lr=3e-3, loss_fn=dz.SoftTargetLoss(teacher, weight=1.0, temperature=1.0),
             progress=False)
    agree = (dz.predict(tiny_mlp, data) == teacher_says).float().mean()
    assert agree > 0.9


def test_bad_distillation_settings(tiny_mlp):
    with pytest.raises(dz.ConfigError, match="weight must be in"):
        dz.SoftTargetLoss(tiny_mlp, weight=1.5)
    with pytest.raises(dz.ConfigError, match="temperature"):
        dz.SoftTargetLoss(tiny_mlp, weight=0.5, temperature=0)


def test_the_teacher_is_frozen_and_not_optimized(tiny_mlp):
    teacher = dz.create_model("lenet300", in_channels=1, image_size=8, classes=4)
    before = [p.detach().clone() for p in teacher.parameters()]
    loss = dz.SoftTargetLoss(teacher, weight=0.5)
    loss.train()
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    dz.train(tiny_mlp, _data(), epochs=1, lr=1e-2, loss_fn=loss, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters()))


def test_soft_target_loss_against_a_hand_computation():
    s, t = torch.tensor([[1.0, 0.0, -1.0]]), torch.tensor([[0.0, 2.0, 0.0]])
    T = 2.0
    p = torch.softmax(t / T, 1)
    expected = (p * (p.log() - torch.log_softmax(s / T, 1))).sum() * T**2
    torch.testing.assert_close(dz.soft_target_loss(s, t, T), expected)


def test_a_masked_conv_model_trains_and_comes_back_in_the_default_layout():
    # On CPU, train() runs conv models channels-last for speed; nothing of that may leak out.
    model = dz.create_model("lenet5", in_channels=1, image_size=16, classes=4)
    x = torch.randn(256, 1, 16, 16)
    data = Dataset(x, x.flatten(1)[:, :4].argmax(1), classes=4, name="random")
    conv = model.conv2
    weight = conv.weight
    mask = torch.rand_like(weight) > 0.7
    dz.reparam.set_mask_(conv, "weight", mask)
    before = weight.detach().clone()
    dz.train(model, data, epochs=1, lr=1e-2, progress=False)
    assert conv.weight is weight  # same Parameter: optimizers and hooks the user holds still point at it
    assert weight.is_contiguous() and conv.weight_mask.is_contiguous()
    assert torch.count_nonzero(weight[~mask]) == 0
    assert not torch.equal(weight[mask], before[mask])
    assert weight.view(-1).numel() == weight.numel()  # view() fails on a channels-last tensor


def test_gradual_global_pruning_of_a_conv_model_during_training():
    # The callback prunes mid-training, when conv weights are channels-last: masks are found on
    # C-order copies, so they are the masks of the plain layout, and training hands back plain weights.
    from deepzip.prune.magnitude import keep_largest
    from deepzip.prune.schedule import GradualPruning

    model = dz.create_model("lenet5", in_channels=1, image_size=16, classes=4)
    x = torch.randn(256, 1, 16, 16)
    data = Dataset(x, x.flatten(1)[:, :4].argmax(1), classes=4, name="random")
    seen = []

    class Watch:  # what a pruning callback sees while it prunes
        def on_step(self, state):
            w = model.conv2.weight.detach()
            seen.append(w.is_contiguous(memory_format=torch.channels_last)
                        and torch.equal(keep_largest(w, 100), keep_largest(w.contiguous(), 100)))

    pruner = GradualPruning(model, 0.8, every=1, scope="global")
    dz.train(model, data, epochs=1, lr=1e-3, callbacks=[Watch(), pruner], progress=False)
    assert seen and all(seen)
    assert model.conv2.weight.is_contiguous()
    assert dz.sparsity_of(model)["total"] == pytest.approx(0.8, abs=1e-3)


def test_a_model_mixing_2d_and_3d_convolutions_trains():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Unflatten(1, (1, 2)), torch.nn.Conv3d(1, 2, 1),
                                torch.nn.Flatten(), torch.nn.LazyLinear(4))
    x = torch.randn(64, 1, 6, 6)
    model(x)  # materialise the lazy layer
    data = Dataset(x, x.flatten(1)[:, :4].argmax(1), classes=4, name="random")
    losses = dz.train(model, data, epochs=2, lr=1e-2, progress=False)
    assert len(losses) == 2 and losses[1] < losses[0]
    assert all(p.is_contiguous() for p in model.parameters())


def test_a_train_config_trains_as_its_keywords_do_and_a_clash_is_refused():
    """One config per concept: dz.TrainConfig is what dz.train takes and what a recipe's training
    settings are (pipeline.TrainStage is the same class)."""
    from deepzip.pipeline import TrainStage

    data = dz.data.load("synthetic", train=True, limit=256)
    losses = []
    for kwargs in ({"epochs": 2, "lr": 3e-3, "optimizer": "sgd", "batch_size": 32},
                   {"config": dz.TrainConfig(epochs=2, lr=3e-3, optimizer="sgd", batch_size=32)}):
        torch.manual_seed(0)
        model = dz.models.create("lenet300")
        losses.append(dz.train(model, data, seed=1, progress=False, **kwargs))
    assert losses[0] == losses[1] and len(losses[0]) == 2
    assert TrainStage is dz.TrainConfig
    with pytest.raises(dz.DeepzipError, match="put lr in the TrainConfig"):
        dz.train(model, data, config=dz.TrainConfig(epochs=1), lr=0.1)
    with pytest.raises(dz.DeepzipError, match="epochs must be ≥ 0"):
        dz.TrainConfig(epochs=-1)
