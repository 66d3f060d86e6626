"""Distillation into a smaller student: each loss by hand, gradients where they belong, nothing extra saved."""
import copy

import pytest
import torch
from torch.nn import functional as F

import deepzip as dz
from deepzip.data import Dataset
from deepzip.distill import AdversarialLoss, HintLoss


def _nets():
    torch.manual_seed(0)
    teacher = dz.create_model("resnet18", in_channels=1, image_size=16, classes=4, width=0.125)
    student = dz.create_model("resnet18", in_channels=1, image_size=16, classes=4, width=0.0625)
    return teacher, student


def test_a_hint_through_an_identity_regressor_is_the_mse_of_the_pooled_maps():
    hint = HintLoss(3, 3)
    with torch.no_grad():
        hint.regressor.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        hint.regressor.bias.zero_()
    s, t = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 4, 4)
    expected = ((F.avg_pool2d(s, 2) - t) ** 2).mean()
    torch.testing.assert_close(hint(s, t), expected)


def test_the_adversary_s_two_losses_by_hand_and_who_each_moves():
    adv = AdversarialLoss(4, hidden=3)
    s = torch.randn(5, 4, requires_grad=True)
    t = torch.randn(5, 4)
    d = adv.discriminator
    expected = (F.softplus(-d(t)).mean() + F.softplus(d(s.detach())).mean())  # −log σ(D(t)) − log(1 − σ(D(s)))
    torch.testing.assert_close(adv.discriminator_loss(s, t), expected)
    loss = adv.student_loss(s)
    torch.testing.assert_close(loss, F.softplus(-d(s)).mean())
    loss.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0  # the student's term reaches the student …
    assert all(p.grad is None for p in d.parameters())  # … and leaves the discriminator alone
    before = [p.detach().clone() for p in d.parameters()]
    s_before = s.detach().clone()
    adv.step(s, t)
    assert any(not torch.equal(a, b) for a, b in zip(before, d.parameters()))  # D's step moves D …
    assert torch.equal(s.detach(), s_before) and s.grad is not None  # … and not the student


def test_three_part_distillation_trains_student_and_regressors_but_not_teacher_or_file():
    teacher, student = _nets()
    x = torch.randn(64, 1, 16, 16)
    data = Dataset(x, x.flatten(1)[:, :4].argmax(1), 4, "random")
    loss = dz.DistillLoss(teacher, student, x[:2], hints={"layer3": "layer3", "layer4": "layer4"},
                          weights=(1.0, 0.5, 0.1), temperature=3, adversary="layer4")
    frozen = copy.deepcopy(teacher.state_dict())
    regressor = [p.detach().clone() for p in loss.regressors.parameters()]
    d_before = [p.detach().clone() for p in loss.adversary.discriminator.parameters()]
    optimized = {id(p) for p in loss.trainable_parameters()}
    assert not optimized & {id(p) for p in teacher.parameters()}
    assert not optimized & {id(p) for p in loss.adversary.parameters()}
    dz.train(student, data, epochs=2, batch_size=16, loss_fn=loss, progress=False)
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in frozen.items())  # the teacher never moves
    assert any(not torch.equal(a, b) for a, b in zip(regressor, loss.regressors.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d_before, loss.adversary.discriminator.parameters()))
    state = loss.checkpoint_state()
    assert not any(k.startswith("teacher.") for k in state) and any(k.startswith("regressors.") for k in state)
    assert any(k.startswith("adversary.") for k in state)


def test_the_students_file_holds_only_the_student(tmp_path):
    teacher, student = _nets()
    x = torch.randn(32, 1, 16, 16)
    loss = dz.DistillLoss(teacher, student, x[:2], hints={"layer2": "layer2"}, weights=(1, 1, 1))
    dz.train(student, Dataset(x, torch.randint(0, 4, (32,)), 4, "r"), epochs=1, loss_fn=loss, progress=False)
    loss.remove()
    header = dz.save(student, tmp_path / "s.dzip")
    names = {e["name"] for e in header["tensors"]}
    assert names == set(student.state_dict())
    assert not any("regressor" in n or "discriminator" in n for n in names)


@pytest.mark.parametrize("kwargs, words", [
    ({"hints": {"layer9": "layer3"}}, "the student has no layer 'layer9'"),
    ({"hints": {"layer3": "nope"}}, "the teacher has no layer 'nope'"),
    ({"hints": {"layer3": "fc"}}, "cannot be matched"),
    ({"weights": (1, 1, 0)}, "needs hints"),
    ({"weights": (1, -1, 0)}, "three numbers ≥ 0"),
    ({"adversary": "layer3"}, "adversary must be"),
])
def test_mistakes_are_one_sentence(kwargs, words):
    teacher, student = _nets()
    with pytest.raises(dz.ConfigError, match=words):
        dz.DistillLoss(teacher, student, torch.randn(2, 1, 16, 16), **kwargs)


def test_a_teacher_of_other_classes_is_refused():
    teacher = dz.create_model("lenet300", in_channels=1, image_size=8, classes=10)
    student = dz.create_model("lenet300", in_channels=1, image_size=8, classes=4)
    with pytest.raises(dz.ConfigError, match="same classes"):
        dz.DistillLoss(teacher, student, torch.randn(2, 1, 8, 8))


def test_the_distill_command_teaches_a_student_from_a_dzip_and_a_recipe_continues_into_one_file(tmp_path):
    import json

    import yaml
    from typer.testing import CliRunner

    from deepzip.cli import app

    runner = CliRunner()
    teacher_recipe = {"model": "lenet300", "dataset": "synthetic", "dense": {"epochs": 2, "lr": 2e-3},
                      "prune": {"sparsity": 0.8, "steps": 1, "retrain": {"epochs": 1}},
                      "share": {"bits": 5, "finetune": {"epochs": 1}}}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(teacher_recipe))
    result = runner.invoke(app, ["compress", "--recipe", str(tmp_path / "t.yaml"), "--out", str(tmp_path / "teacher"),
                                 "--limit", "512", "--quiet"])
    assert result.exit_code == 0, result.output
    rest = {"prune": {"sparsity": 0.8, "steps": 1, "retrain": {"epochs": 2}}, "share": {"bits": 5, "finetune": {"epochs": 1}},
            "distill": {"weight": 0.5}}
    (tmp_path / "rest.yaml").write_text(yaml.safe_dump(rest))
    result = runner.invoke(app, ["distill", "--teacher", str(tmp_path / "teacher" / "model.dzip"), "--student", "lenet300",
                                 "--hint", "fc2:fc2", "--weights", "1,0.5,0.1", "--epochs", "4", "--data", "synthetic",
                                 "--limit", "512", "--recipe", str(tmp_path / "rest.yaml"), "--out",
                                 str(tmp_path / "student"), "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "student" / "report.json").read_text())
    assert report["accuracy"]["from_file"] > 50 and report["ratio"] > 10
    history = json.loads((tmp_path / "student" / "history.json").read_text())
    assert history[0]["stage"] == "student"
    # The student's own checkpoint, for later runs to start from: the student's tensors, no regressor.
    from safetensors import safe_open
    with safe_open(str(tmp_path / "student" / "dense.safetensors"), "pt") as f:
        assert set(f.keys()) == set(dz.create_model("lenet300", classes=10).state_dict())
    bad = runner.invoke(app, ["distill", "--teacher", str(tmp_path / "teacher" / "model.dzip"), "--student", "lenet300",
                              "--hint", "fc9:fc2", "--weights", "1,1,0", "--data", "synthetic", "--limit", "64",
                              "--out", str(tmp_path / "bad"), "--quiet"])
    assert bad.exit_code == 2 and "the student has no layer 'fc9'" in bad.output
