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
    eager, kinds, x = _models()
    model = kinds[kind]
    module = model.module() if kind == "exported" else model
    before = {k: v.clone() for k, v in module.state_dict().items()}
    result = metrics.mprt(model, x, method="saliency", targets=0)
    assert result.layers == ["fc", "conv2", "conv1"]  # the run order, also for TorchScript
    # layers that lost reset_parameters() are re-drawn as it would: the eager model's numbers
    reference = metrics.mprt(eager, x, method="saliency", targets=0)
    torch.testing.assert_close(result.similarity, reference.similarity)
    torch.testing.assert_close(
        metrics.efficient_mprt(model, x, method="saliency", targets=0).values,
        metrics.efficient_mprt(eager, x, method="saliency", targets=0).values,
    )
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


def test_a_model_in_train_mode_keeps_its_batch_statistics_and_flag():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.Conv2d(4, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    ).train()
    x = torch.randn(3, 1, 12, 12)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calls = [
        lambda: metrics.randomizable_layers(model, x),
        lambda: metrics.randomizable_blocks(model, x),
        lambda: camscope.probe_layers(model, x),
        lambda: metrics.mprt(model, x, method="saliency", targets=0),
        lambda: metrics.mprt(model, x, method="grad_cam", targets=0, layers="blocks"),
        lambda: metrics.efficient_mprt(model, x, method="saliency", targets=0),
        lambda: metrics.random_logit(model, x, method="saliency"),
        lambda: metrics.road(model, x, torch.rand(3, 12, 12), torch.zeros(3, dtype=torch.long)),
    ]
    for call in calls:
        call()
        assert model.training and all(m.training for m in model.modules())
        for key, value in model.state_dict().items():
            assert torch.equal(value, before[key]), key


def test_an_exported_programs_module_and_bad_arguments_are_clear_errors():
    _, kinds, x = _models()
    graph = kinds["exported"].module()  # one graph: no layers to randomise
    for call in (metrics.mprt, metrics.efficient_mprt):
        with pytest.raises(camscope.LayerError, match=r"torch\.export\.unflatten"):
            call(graph, x, method="saliency", targets=0)
    model = create_model("tiny2d", num_classes=3, input_size=16).eval()
    bad = [
        (dict(targets="all"), "class indices, an int or one per sample"),
        (dict(targets=lambda o: o[:, 0]), "class indices, an int or one per sample"),
        (dict(targets=[0, 1]), "one class per sample \\(3\\)"),
        (dict(targets=torch.tensor([0.0, 1.0, 2.0])), "integer class indices"),
    ]
    for options, message in bad:
        with pytest.raises(camscope.InputError, match=message):
            metrics.mprt(model, x, method="saliency", **options)
    with pytest.raises(camscope.InputError, match="bins must be at least 2"):
        metrics.efficient_mprt(model, x, method="saliency", bins=0)
    with pytest.raises(camscope.InputError, match="floating point"):
        metrics.mprt(model, (x * 100).to(torch.uint8), method="saliency")
    with pytest.raises(camscope.CamscopeError, match="takes no layer"):
        metrics.mprt(model, x, method="saliency", layer="conv2")


def test_relu_rules_on_torchscript_say_why_they_cannot_run():
    _, kinds, x = _models()
    for method in ("guided_backprop", "deconvnet"):
        with pytest.raises(camscope.MethodError, match="TorchScript runs no Python hooks"):
            camscope.explain(kinds["scripted"], x, method=method)


@pytest.mark.parametrize("inplace", [False, True])
def test_relu_rules_run_on_an_exported_program_as_on_the_eager_model(inplace):
    torch.manual_seed(0)
    eager = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(inplace=inplace), torch.nn.Conv2d(4, 4, 3),
        torch.nn.ReLU(inplace=inplace), torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 3),
    ).eval()  # fmt: skip
    x = torch.randn(2, 1, 12, 12)
    program = torch.export.export(eager, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    for method in ("guided_backprop", "deconvnet", "guided_grad_cam"):
        ours = camscope.explain(program, x, method=method, targets=1).maps
        torch.testing.assert_close(ours, camscope.explain(eager, x, method=method, targets=1).maps)
