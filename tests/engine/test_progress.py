"""Long batched backward passes show progress: automatic chunks are small enough for a bar to
move, a chunk size the user chose is kept, and the maps do not change."""

from __future__ import annotations

import torch
from torch import nn

import camscope
from camscope.engine import vjp
from camscope.errors import MethodError


def _sizes(count: int, **options) -> list[int]:
    x = torch.randn(3, 5, requires_grad=True)
    scores = x @ torch.randn(5, count)
    chunks = vjp.chunked_vjp(scores, x, missing=lambda: MethodError("x"), **options)
    return [stop - start for start, stop, _ in chunks]


def test_automatic_chunks_are_capped_only_when_progress_is_shown():
    assert _sizes(200, chunk_size=None) == [200]
    assert _sizes(200, chunk_size=None, progress="p") == [64, 64, 64, 8]
    assert _sizes(200, chunk_size=150, progress="p", automatic=True) == [64, 64, 64, 8]
    assert _sizes(200, chunk_size=100, progress="p") == [100, 100]  # the user's choice


def test_many_targets_show_a_bar_and_give_the_same_maps(monkeypatch, capsys):
    monkeypatch.setattr(vjp, "PROGRESS_DELAY", 0.0)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4, 150),
    ).eval()  # fmt: skip
    x = torch.randn(2, 1, 8, 8)
    quiet = camscope.explain(model, x, method="grad_cam", layer="1", targets="all", progress=False)
    assert "gradients at 1" not in capsys.readouterr().err
    shown = camscope.explain(model, x, method="grad_cam", layer="1", targets="all")
    assert "gradients at 1" in capsys.readouterr().err
    torch.testing.assert_close(shown.maps, quiet.maps)
    saliency = camscope.explain(model, x, method="saliency", targets="all")
    assert "input gradients" in capsys.readouterr().err
    assert saliency.maps.shape == (2, 150, 1, 8, 8)
