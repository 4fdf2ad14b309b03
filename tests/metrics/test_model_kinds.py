"""Every metric that runs a model takes what ``explain()`` takes: a compiled, an exported
(``torch.export``) or a TorchScript model, with the eager module's results, and leaves it as it
was."""

from __future__ import annotations

import warnings

import pytest
import torch

import camscope
from camscope import metrics
from camscope.evaluation.sanity import sanity_check
from camscope.models import create_model


def _models() -> tuple[torch.nn.Module, dict[str, object], torch.Tensor]:
    torch.manual_seed(0)
    eager = create_model("tiny2d", num_classes=3, input_size=16).eval()
    x = torch.randn(3, 1, 16, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated
        scripted = torch.jit.script(create_model("tiny2d", num_classes=3, input_size=16).eval())
    scripted.load_state_dict(eager.state_dict())
    batch = torch.export.Dim("batch")
    kinds = {
        "compiled": torch.compile(eager),
        "exported": torch.export.export(eager, (x,), dynamic_shapes=({0: batch},)),
        "scripted": scripted,
    }
    return eager, kinds, x


CALLS = {
    "target_probabilities": lambda m, x, y, a: metrics.target_probabilities(m, x, y),
    "average_drop": lambda m, x, y, a: metrics.average_drop(m, x, a, y).masked,
    "deletion": lambda m, x, y, a: metrics.deletion(m, x, a, y).auc,
    "fidelity": lambda m, x, y, a: metrics.fidelity(m, x, a, y).masked,
    "faithfulness_correlation": lambda m, x, y, a: (
        metrics.faithfulness_correlation(m, x, a, y, runs=4).values
    ),
    "infidelity": lambda m, x, y, a: metrics.infidelity(m, x, a, y, samples=4).values,
    "road": lambda m, x, y, a: metrics.road(m, x, a, y, percentages=[30, 70]).gap,
    "smooth": lambda m, x, y, a: camscope.smooth(m, x, method="saliency", noise_samples=2).maps,
}


@pytest.mark.parametrize("kind", ["compiled", "exported", "scripted"])
def test_metrics_take_compiled_exported_and_scripted_models(kind):
    eager, kinds, x = _models()
    model = kinds[kind]
    y = torch.tensor([0, 1, 2])
    maps = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1))
    for name, call in CALLS.items():
        torch.testing.assert_close(call(model, x, y, maps), call(eager, x, y, maps), msg=name)


@pytest.mark.parametrize("kind", ["compiled", "exported", "scripted"])
def test_randomisation_tests_take_every_model_kind_and_leave_it_alone(kind):
    _, kinds, x = _models()
    model = kinds[kind]
    module = model.module() if kind == "exported" else model
    before = {k: v.clone() for k, v in module.state_dict().items()}
    result = metrics.mprt(model, x, method="saliency", targets=0)
    assert result.layers == ["fc", "conv2", "conv1"]  # the run order, also for TorchScript
    assert result.similarity.shape == (3, 3) and bool(torch.isfinite(result.similarity).all())
    assert float(result.similarity[:, -1].abs().mean()) < 0.9  # re-drawn: the maps changed
    assert metrics.efficient_mprt(model, x, method="saliency", targets=0).values.shape == (3,)
    assert metrics.random_logit(model, x, method="saliency").values.shape == (3,)
    checked = sanity_check(model, x, torch.tensor([0, 1, 2]), ["saliency"], progress=False)
    assert [r.method for r in checked] == ["saliency"]
    for key, value in module.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_an_exported_module_randomised_in_place_is_restored_after_an_interruption(monkeypatch):
    import copy
    import sys

    _, kinds, x = _models()
    module = torch.export.unflatten(kinds["exported"])  # what camscope runs for a program
    with pytest.raises(RuntimeError):
        copy.deepcopy(module)  # so it is randomised in place, and must be restored
    before = {k: v.clone() for k, v in module.state_dict().items()}
    randomization = sys.modules["camscope.metrics.randomization"]
    calls = []
    real = randomization.map_similarity

    def interrupt_the_second_step(first, second, kind):
        calls.append(kind)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(first, second, kind)

    monkeypatch.setattr(randomization, "map_similarity", interrupt_the_second_step)
    with pytest.raises(KeyboardInterrupt):
        metrics.mprt(module, x, method="saliency", targets=0)
    for key, value in module.state_dict().items():
        assert torch.equal(value, before[key]), key
    monkeypatch.setattr(randomization, "map_similarity", real)
    finished = metrics.mprt(module, x, method="saliency", targets=0)
    assert float(finished.similarity[:, -1].abs().mean()) < 0.9  # it did randomise
    for key, value in module.state_dict().items():
        assert torch.equal(value, before[key]), key
