"""Models as users have them: exported, compiled, scripted, in train mode, from two threads."""

from __future__ import annotations

import copy
import threading
import warnings

import pytest
import torch
from torch import nn

import camscope
from camscope.errors import LayerError, ModelError
from camscope.io import load_model_spec
from camscope.models import create_model


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv1(x)))
        return self.fc(torch.relu(self.conv2(x)).mean((2, 3)))


def _eager() -> Net:
    torch.manual_seed(0)
    return Net().eval()


def test_exported_program_is_explained_with_its_layer_names(tmp_path):
    model = _eager()
    x = torch.randn(3, 1, 8, 8)
    program = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, tmp_path / "net.pt2")
    loaded, record = load_model_spec(str(tmp_path / "net.pt2"))
    assert record["format"] == "torch.export"
    expected = camscope.explain(model, x, method="grad_cam", layer="conv2", targets="all")
    for candidate in (loaded, program):  # a file, or the ExportedProgram itself
        e = camscope.explain(candidate, x, method="grad_cam", layer="conv2", targets="all")
        torch.testing.assert_close(e.maps, expected.maps, rtol=1e-5, atol=1e-6)
    saliency = camscope.explain(loaded, x, method="saliency")
    torch.testing.assert_close(
        saliency.maps, camscope.explain(model, x, method="saliency").maps, rtol=1e-5, atol=1e-6
    )
    assert camscope.explain(loaded, x, method="grad_cam").layer == "conv2"
    with pytest.raises(LayerError, match="unflatten"):  # .module() inlines its layers
        camscope.explain(program.module(), x, method="grad_cam")
    kinds = {info.name: info.kind for info in camscope.probe_layers(loaded, x)}
    assert kinds["conv2"] == "Conv2d" and kinds["bn"] == "BatchNorm2d"  # as in the eager model


def test_exported_program_with_a_fixed_batch_says_how_to_export():
    model = _eager()
    program = torch.export.export(model, (torch.randn(2, 1, 8, 8),))
    with pytest.raises(ModelError, match="dynamic_shapes"):
        camscope.explain(program, torch.randn(3, 1, 8, 8), method="saliency")


def test_inputs_that_do_not_fit_the_model_say_how():
    from camscope.models import create_model

    model = _eager()  # one input channel
    with pytest.raises(ModelError, match=r"the inputs have 3 channel\(s\), the model takes 1"):
        camscope.explain(model, torch.randn(2, 3, 8, 8), method="saliency")
    volumes = create_model("tiny3d", num_classes=3, input_size=16).eval()
    with pytest.raises(ModelError, match=r"inputs are 2D images .* give 2D images to a 2D"):
        camscope.explain(volumes, torch.randn(2, 1, 16, 16), method="saliency")
    with pytest.raises(ModelError, match=r"inputs are 3D volumes .* give 2D images to a 2D"):
        camscope.explain(model, torch.randn(2, 1, 8, 8, 8), method="saliency")
    bounded = torch.export.export(
        model, (torch.randn(2, 1, 8, 8),), dynamic_shapes=({0: torch.export.Dim("b", max=4)},)
    )
    with pytest.raises(ModelError, match=r"batch axis has a maximum.*without max"):
        camscope.explain(bounded, torch.randn(2, 1, 8, 8), method="integrated_gradients")


@pytest.mark.parametrize(
    "backend", ["eager", "aot_eager", pytest.param("inductor", marks=pytest.mark.slow)]
)
def test_compiled_model_is_explained_through_its_module(backend):
    model = _eager()
    x = torch.randn(2, 1, 8, 8)
    compiled = torch.compile(model, backend=backend)
    compiled(x)  # the usual warm-up call
    expected = camscope.explain(model, x, method="grad_cam", targets="all")
    e = camscope.explain(compiled, x, method="grad_cam", targets="all")
    torch.testing.assert_close(e.maps, expected.maps)
    assert e.layer == "conv2"


@pytest.mark.parametrize("how", ["module.compile()", "a compiled submodule"])
def test_models_compiled_in_place_run_eagerly_for_the_call_and_stay_compiled(how):
    """``model.compile()`` (in place) and ``model.part = torch.compile(model.part)`` keep the
    compiled graph where camscope needs Python: hooks, rules and per-target gradients (whose
    retained graph a compiled backward refuses). Each call runs them eagerly and leaves them
    compiled."""
    model = _eager()
    x = torch.randn(2, 1, 8, 8)
    expected = {
        method: camscope.explain(model, x, method=method, targets="all").maps
        for method in ("grad_cam", "lrp", "deeplift")
    }
    compiled = copy.deepcopy(model)
    if how == "module.compile()":
        compiled.compile(backend="aot_eager")
    else:
        compiled.conv2 = torch.compile(compiled.conv2, backend="aot_eager")
    with warnings.catch_warnings():  # dynamo's own warnings while it traces a submodule
        warnings.simplefilter("ignore", UserWarning)
        compiled(x)  # the usual warm-up call
    for method, maps in expected.items():
        e = camscope.explain(compiled, x, method=method, targets="all")
        torch.testing.assert_close(e.maps, maps)
    if how == "module.compile()":
        assert compiled._compiled_call_impl is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        torch.testing.assert_close(compiled(x), model(x))


@pytest.mark.parametrize("dims", [2, 3])
def test_the_layers_of_a_compiled_submodule_keep_their_names(dims):
    conv = {2: nn.Conv2d, 3: nn.Conv3d}[dims]
    torch.manual_seed(0)
    block = nn.Sequential(conv(4, 6, 3, padding=1), nn.ReLU())
    model = nn.Sequential(conv(1, 4, 3, padding=1), nn.ReLU(), block, nn.Flatten(2))
    model.append(nn.Linear(6**dims, 1)).append(nn.Flatten()).eval()
    x = torch.randn(2, 1, *[6] * dims)
    expected = camscope.explain(model, x, method="grad_cam", layer="2.0", targets="all")
    compiled = copy.deepcopy(model)
    compiled[2] = torch.compile(compiled[2], backend="eager")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        compiled(x)
    e = camscope.explain(compiled, x, method="grad_cam", layer="2.0", targets="all")
    assert e.layer == "2._orig_mod.0"  # the module's own name
    torch.testing.assert_close(e.maps, expected.maps)
    with pytest.raises(LayerError, match=r"unknown layer '2\.7'"):
        camscope.explain(compiled, x, method="grad_cam", layer="2.7")
    test = camscope.metrics.mprt(compiled, x, method="saliency", targets=0, layers=["4", "2.0"])
    assert test.layers == ["4", "2._orig_mod.0"]


def test_weights_of_a_model_with_a_compiled_submodule_load_into_the_plain_one(tmp_path):
    from safetensors.torch import save_file
    from torchvision.models import resnet18

    model = resnet18(num_classes=3).eval()
    model.layer4 = torch.compile(model.layer4, backend="eager")
    assert "layer4._orig_mod.0.conv1.weight" in model.state_dict()
    save_file(model.state_dict(), tmp_path / "weights.safetensors")
    loaded, _ = load_model_spec(
        tmp_path / "weights.safetensors",
        architecture="torchvision:resnet18",
        options={"num_classes": 3},
    )
    torch.testing.assert_close(
        loaded.layer4[0].conv1.weight, model.layer4._orig_mod[0].conv1.weight
    )


def test_scripted_model_layer_methods_say_why_and_input_methods_work():
    model = _eager()
    x = torch.randn(2, 1, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated
        scripted = torch.jit.script(model)
    with pytest.raises(LayerError, match="TorchScript"):
        camscope.explain(scripted, x, method="grad_cam", layer="conv2")
    with pytest.raises(LayerError, match="TorchScript"):
        camscope.explain(scripted, x, method="grad_cam")
    e = camscope.explain(scripted, x, method="saliency")
    torch.testing.assert_close(e.maps, camscope.explain(model, x, method="saliency").maps)


def test_train_mode_batch_norm_is_left_as_it_was():
    model = _eager().train()
    x = torch.randn(4, 1, 8, 8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for method in ("grad_cam", "saliency", "occlusion"):
        camscope.explain(model, x, method=method, eval_mode=False)
    after = model.state_dict()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key  # running_mean/var, num_batches_tracked
    assert model.training


def test_layer_probe_sees_the_whole_batch_in_train_mode():
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(72, 5), nn.BatchNorm1d(5), nn.Linear(5, 2)
    ).train()
    x = torch.randn(4, 1, 8, 8)
    e = camscope.explain(model, x, method="grad_cam", eval_mode=False)
    assert e.layer == "0" and e.maps.shape == (4, 1, 6, 6)


def test_tuple_outputs_are_detached():
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Conv2d(1, 3, 3)
            self.head = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            features = self.body(x)
            return self.head(features.mean((2, 3))), {"features": features}

    model = Two()
    e = camscope.explain(
        model, torch.randn(2, 1, 6, 6), method="grad_cam", targets=lambda out: out[0][:, 0]
    )
    logits, extra = e.outputs
    assert not logits.requires_grad and not extra["features"].requires_grad
    assert all(p.grad is None for p in model.parameters())


def test_two_threads_on_one_model_are_refused_not_mixed():
    model = _eager()
    x = torch.randn(2, 1, 8, 8)
    started, release = threading.Event(), threading.Event()
    original = model.conv2.forward

    def slow(inputs: torch.Tensor) -> torch.Tensor:
        started.set()
        release.wait(10)
        return original(inputs)

    model.conv2.forward = slow  # type: ignore[method-assign]
    errors: list[BaseException] = []
    worker = threading.Thread(
        target=lambda: camscope.explain(model, x, method="grad_cam", layer="conv2")
    )
    worker.start()
    assert started.wait(10)
    try:
        with pytest.raises(ModelError, match="another thread"):
            camscope.explain(model, x, method="grad_cam", layer="conv2")
    except BaseException as error:
        errors.append(error)
    release.set()
    worker.join(10)
    del model.conv2.forward
    assert not errors
    camscope.explain(model, x, method="grad_cam", layer="conv2")  # free again afterwards


def test_predicted_is_a_target_in_the_api_as_on_the_command_line():
    model = create_model("tiny2d", num_classes=3)
    x = torch.randn(2, 1, 16, 16)
    a = camscope.explain(model, x, method="grad_cam", targets="predicted")
    b = camscope.explain(model, x, method="grad_cam")
    assert torch.equal(a.targets, b.targets) and torch.equal(a.maps, b.maps)
