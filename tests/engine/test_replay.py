"""Replaying the unchanged bottom of a network in the randomisation tests: the same maps as
running every pass, fewer module calls, nothing left patched, nothing replayed where gradients
or other inputs need the real pass."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch import nn

from camscope import metrics
from camscope.engine.replay import PrefixReplay
from camscope.models import create_model


def _counting(model: nn.Module) -> Counter[str]:
    """How often each convolution really runs (a forward pre-hook on a module would stop its
    container from being replayed, so count in the convolution's own forward)."""
    calls: Counter[str] = Counter()
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.Conv3d):
            run = type(module).forward

            def forward(x, _run=run, _module=module, _name=name):
                calls[_name] += 1
                return _run(_module, x)

            module.forward = forward
    return calls


def test_replay_returns_the_recorded_outputs_and_restores_forward():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(inplace=True), nn.Conv2d(4, 4, 3), nn.Flatten()
    ).eval()
    x = torch.randn(2, 1, 8, 8)
    expected = model(x)
    replay = PrefixReplay(model, x)
    assert replay.enabled and set(replay.calls) == {"0", "1", "2", "3"}
    calls = _counting(model)
    with replay.replaying(["2"]) as count, torch.no_grad():
        assert count == 2  # the convolution and the in-place ReLU before the changed one
        torch.testing.assert_close(model(x), expected)
        assert calls == Counter({"2": 1})  # the first convolution was replayed
        model(x + 1)  # other inputs: everything runs
        assert calls == Counter({"0": 1, "2": 2})
    with replay.replaying(["2"]):
        model(x).sum()  # autograd on: everything runs (gradients may be needed below)
    assert calls["0"] == 2
    assert "forward" not in model[1].__dict__  # unpatched
    with replay.replaying([]) as count, torch.no_grad():  # nothing changed: all replayed
        assert count == 4
        torch.testing.assert_close(model(x), expected)
    assert calls["2"] == 3


def test_an_in_place_change_of_a_replayed_output_is_not_taken_for_it():
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.first, self.second = nn.Conv2d(1, 1, 1), nn.Conv2d(1, 1, 1)

        def forward(self, x):
            y = self.first(x)
            y.mul_(2)  # in place, outside any module
            return self.second(y)

    torch.manual_seed(0)
    model = Block().eval()
    x = torch.randn(1, 1, 4, 4)
    replay = PrefixReplay(model, x)
    # ``second`` was recorded with first's output changed in place: a copy of its value is kept
    assert isinstance(replay.calls["second"].inputs[0], torch.Tensor)
    with replay.replaying([]), torch.no_grad():
        torch.testing.assert_close(model(x), model.second(2 * model.first(x)))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_mprt_with_replay_gives_the_same_maps_with_fewer_passes(spatial_dims):
    torch.manual_seed(0)
    name = "tiny2d" if spatial_dims == 2 else "tiny3d"
    model = create_model(name, num_classes=3, input_size=16).eval()
    x = torch.randn(3, 1, *[16] * spatial_dims)
    kw = {"method": "grad_cam", "layer": "conv2", "targets": 0, "keep_maps": True}
    plain = metrics.mprt(model, x, reuse=False, **kw)
    again = metrics.mprt(model, x, **kw)
    assert torch.equal(plain.maps, again.maps) and torch.equal(plain.similarity, again.similarity)
    independent = metrics.mprt(model, x, order="independent", **kw)
    assert torch.equal(
        independent.maps, metrics.mprt(model, x, order="independent", reuse=False, **kw).maps
    )
    assert not any("forward" in m.__dict__ for m in model.modules())


@pytest.mark.slow
def test_mprt_replays_the_trunk_of_a_resnet(monkeypatch):
    import torchvision

    runs = Counter()
    convolve = nn.Conv2d.forward

    def counted(self, x):
        runs["conv"] += 1
        return convolve(self, x)

    monkeypatch.setattr(nn.Conv2d, "forward", counted)

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=4).eval()
    x = torch.randn(2, 3, 32, 32)
    layers = ["fc", "layer4.1.conv2", "layer2.0.conv1"]
    kw = {"method": "grad_cam", "layer": "layer3", "targets": 1, "layers": layers}
    plain = metrics.mprt(model, x, reuse=False, keep_maps=True, **kw)
    full, runs["conv"] = runs["conv"], 0
    replayed = metrics.mprt(model, x, keep_maps=True, **kw)
    assert torch.equal(plain.maps, replayed.maps)
    # 20 convolutions a pass. Without replay: the original map and three steps (4 passes);
    # with it, one recording pass more, and the steps skip what ran before their first changed
    # layer, up to layer3 (above it autograd is on): fc and layer4.1.conv2 skip the 15 of the
    # stem and layer1–layer3, layer2.0.conv1 the 5 of the stem and layer1
    assert full == 4 * 20
    assert runs["conv"] == 5 * 20 - 15 - 15 - 5
    # a gradient-to-input method needs the real passes: replay is not used, maps unchanged
    saliency = {"method": "saliency", "targets": 1, "layers": layers}
    torch.testing.assert_close(
        metrics.mprt(model, x, **saliency).similarity,
        metrics.mprt(model, x, reuse=False, **saliency).similarity,
        rtol=0,
        atol=0,
    )
