"""The public API's promises: what `import deepzip` costs, docstrings, the training loop's shape."""
import inspect
import subprocess
import sys

import pytest
import torch

import deepzip as dz
from deepzip.data import Dataset


def test_import_pulls_in_neither_scikit_learn_nor_numba_nor_registers_an_optimizer_hook():
    probe = ("import sys, torch.optim.optimizer as o, deepzip; "
             "print(sorted(m for m in ('sklearn', 'numba', 'matplotlib', 'tensorboard') if m in sys.modules), "
             "len(o._global_optimizer_post_hooks))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]", "0"]


def test_the_first_mask_registers_the_step_hook_once():
    probe = ("import torch, torch.optim.optimizer as o, deepzip as dz; m = torch.nn.Linear(4, 4); "
             "dz.prune_(m, sparsity=0.5); dz.prune_(m, sparsity=0.7); print(len(o._global_optimizer_post_hooks))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "1"


@pytest.mark.parametrize("name", sorted(n for n in dz.__all__ if callable(getattr(dz, n))
                                        and not isinstance(getattr(dz, n), type(dz.DeepzipError))))
def test_public_functions_document_their_arguments_with_an_example(name):
    doc = inspect.getdoc(getattr(dz, name)) or ""
    assert "Example" in doc, f"dz.{name} has no example in its docstring"
    params = [p for p in inspect.signature(getattr(dz, name)).parameters if p not in ("self", "args", "kwargs")]
    if len(params) > 1:
        assert "Args:" in doc, f"dz.{name} takes {params} but its docstring has no Args section"


def _data(n=256):
    x = torch.randn(n, 1, 8, 8)
    return Dataset(x, x.flatten(1)[:, :4].argmax(1), classes=4, name="random")


def test_train_takes_a_torch_dataloader_and_a_loss_with_its_own_parameters(tiny_mlp):
    data = _data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data.x, data.y), batch_size=32, shuffle=True)

    class WithHead(torch.nn.Module):  # a loss that owns a trainable module, as a hint regressor does
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(1))

        def forward(self, model, batch):
            x, y = batch
            return torch.nn.functional.cross_entropy(model(x) * self.scale, y)

    loss = WithHead()
    losses = dz.train(tiny_mlp, loader, epochs=3, lr=1e-2, loss_fn=loss, progress=False)
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert loss.scale.item() != 1.0  # the loss's own parameter was optimized
    assert dz.evaluate(tiny_mlp, loader) == pytest.approx(dz.evaluate(tiny_mlp, data))


def test_callbacks_see_the_loss_and_can_stop_the_run(tiny_mlp):
    seen = []

    class StopAtFive:
        def on_step(self, state):
            seen.append((state.step, state.loss, state.total))
            state.stop = state.step >= 5

    dz.train(tiny_mlp, _data(), epochs=4, batch_size=32, callbacks=[StopAtFive()], progress=False)
    assert [s for s, _, _ in seen] == [1, 2, 3, 4, 5]
    assert all(loss > 0 for _, loss, _ in seen) and seen[0][2] == 32


def test_a_diverging_loss_stops_training_with_one_sentence(tiny_mlp):
    with torch.no_grad():
        tiny_mlp.fc1.weight[0, 0] = float("nan")
    with pytest.raises(dz.TrainingError, match="loss became nan at step 1 .*learning rate"):
        dz.train(tiny_mlp, _data(), epochs=1, progress=False)


def test_global_pruning_of_shared_weights_is_refused(tiny_mlp):
    dz.share_weights_(tiny_mlp, bits=3)
    with pytest.raises(dz.ConfigError, match="already share weights"):
        dz.prune_(tiny_mlp, sparsity=0.9, scope="global")


def test_the_decoder_hands_out_positions_codes_and_codebook(tmp_path, tiny_mlp):
    from deepzip.dzip import DzipReader, TensorDecoder
    from deepzip.reparam import sharing

    dz.prune_(tiny_mlp, sparsity={"fc1": 0.9, "fc2": 0.3})
    dz.share_weights_(tiny_mlp, bits=4)
    dz.save(tiny_mlp, tmp_path / "m.dzip")
    with DzipReader(tmp_path / "m.dzip") as r:
        dec = TensorDecoder(r)
        entries = {e["name"]: (i, e) for i, e in enumerate(r.header["tensors"])}
        for layer in ("fc1", "fc2"):
            decoded = dec.decode(entries[f"{layer}.weight"][1], entries[f"{layer}.weight"][0])
            positions, codes, codebook = decoded.nonzeros()
            sw = sharing(getattr(tiny_mlp, layer))
            assign = sw.assign.flatten().long()
            assert positions.tolist() == torch.nonzero(assign).flatten().tolist()
            assert codes.tolist() == assign[assign > 0].tolist()
            assert torch.equal(torch.from_numpy(codebook[1:]), sw.centroids.detach())
            assert torch.equal(decoded.dense(), getattr(tiny_mlp, layer).weight.detach())
