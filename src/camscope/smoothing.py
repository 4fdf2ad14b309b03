"""SmoothGrad and VarGrad around any method: the mean (or variance) of the maps of noisy copies.

``smooth(model, x, method="saliency", noise_samples=50, noise_std=0.15)`` explains ``n`` copies
of every input with Gaussian noise of standard deviation ``noise_std · (max − min)`` of that
input added (Smilkov et al. 2017), and returns the mean of their maps (``kind="smoothgrad"``) or
their variance (``kind="vargrad"``, Adebayo et al. 2018). The noisy copies are explained together,
as one batch per chunk, the chunk sized so the copies fit a memory budget (Captum's NoiseTunnel
holds all of them at once and runs out of memory on volumes). The noise is seeded and the same
for every input (scaled by its range), so an input's result does not depend on its batch.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import torch
from torch import nn

from camscope.checks import check_inputs
from camscope.engine import any_model
from camscope.errors import InputError
from camscope.explain import explain
from camscope.explanation import Explanation

__all__ = ["SMOOTHING_BUDGET", "smooth"]

#: Input values of noisy copies explained at once by default (about 64 MB of float32 inputs).
SMOOTHING_BUDGET = 16_000_000


@any_model
def smooth(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    method: str,
    noise_samples: int = 50,
    noise_std: float = 0.15,
    kind: Literal["smoothgrad", "vargrad"] = "smoothgrad",
    seed: int = 0,
    budget: int = SMOOTHING_BUDGET,
    targets: Any = None,
    target: Literal["maps", "gradients"] = "maps",
    **explain_options: Any,
) -> Explanation:
    """SmoothGrad / VarGrad of ``method``: an Explanation like ``explain()``'s, ``method`` named
    ``"smoothgrad(<method>)"`` or ``"vargrad(<method>)"``.

    Args:
        model: the network (never modified).
        inputs: ``(B, C, *S)``.
        method: any registered method.
        noise_samples: noisy copies per input.
        noise_std: noise standard deviation as a share of each input's value range.
        kind: ``"smoothgrad"`` (mean of the maps) or ``"vargrad"`` (their variance).
        seed: seed of the noise.
        budget: input values explained at once (copies are chunked to fit).
        targets: as for :func:`camscope.explain`; fixed on the noise-free inputs (the predicted
            class of the clean input is explained in every copy).
        target: what is averaged: ``"maps"`` (SmoothGrad of any method) or ``"gradients"``
            (the layer's gradients and their powers, for ``method="grad_cam_pp"``: Smooth
            Grad-CAM++, the registered method ``smooth_grad_cam_pp``, with the clean input's
            activations).
        **explain_options: ``layer``, the method's options, ...

    Raises:
        InputError: bad counts or kind; and whatever :func:`explain` raises.
    """
    explain_options.pop("progress", None)  # taken as explain() takes it; the inner calls are quiet
    if int(noise_samples) < 1:
        raise InputError(f"noise_samples must be at least 1, got {noise_samples}")
    if kind not in ("smoothgrad", "vargrad"):
        raise InputError(f"kind must be 'smoothgrad' or 'vargrad', not {kind!r}")
    if noise_std < 0:
        raise InputError(f"noise_std must be non-negative, got {noise_std}")
    if target not in ("maps", "gradients"):
        raise InputError(f"target must be 'maps' or 'gradients', not {target!r}")
    if target == "gradients":
        if method not in ("grad_cam_pp", "smooth_grad_cam_pp") or kind != "smoothgrad":
            raise InputError(
                "smooth(target='gradients') averages Grad-CAM++'s gradient moments (Smooth "
                f"Grad-CAM++): use method='grad_cam_pp' with kind='smoothgrad', not {method!r} "
                f"with {kind!r}; target='maps' smooths any method's maps"
            )
        if "batch_size" not in explain_options and budget != SMOOTHING_BUDGET:
            per_sample = max(inputs[0].numel(), 1) if isinstance(inputs, torch.Tensor) else 1
            explain_options["batch_size"] = max(1, budget // per_sample)
        return explain(
            model,
            inputs,
            method="smooth_grad_cam_pp",
            targets=targets,
            noise_samples=noise_samples,
            noise_std=noise_std,
            seed=seed,
            progress=False,
            **explain_options,
        )
    x = check_inputs(model, inputs)
    clean = explain(model, x, method=method, targets=targets, progress=False, **explain_options)
    fixed = clean.targets if clean.targets is not None else targets
    count = int(noise_samples)
    per_sample = x[0].numel()
    chunk = max(1, min(len(x) * count, budget // max(per_sample, 1)))
    span = (x.flatten(1).amax(1) - x.flatten(1).amin(1)).view(-1, *([1] * (x.ndim - 1)))
    # The same draws for every input (scaled by its range): an input's result does not depend on
    # its batch or its place in it.
    noise = torch.randn(
        (count, *x.shape[1:]), generator=torch.Generator().manual_seed(seed), dtype=x.dtype
    ).to(x.device)[None]  # (1, n, C, *S)
    noisy = (x[:, None] + noise * noise_std * span[:, None]).flatten(0, 1)
    rows = fixed.repeat_interleave(count, dim=0) if isinstance(fixed, torch.Tensor) else fixed
    pieces = []
    for start in range(0, len(noisy), chunk):
        part = rows[start : start + chunk] if isinstance(rows, torch.Tensor) else rows
        e = explain(
            model,
            noisy[start : start + chunk],
            method=method,
            targets=part,
            progress=False,
            **explain_options,
        )
        pieces.append(e.maps.detach())
    maps = torch.cat(pieces).unflatten(0, (len(x), count))
    result = maps.mean(1) if kind == "smoothgrad" else maps.var(1, unbiased=False)
    return dataclasses.replace(
        clean,
        maps=result,
        method=f"{kind}({clean.method})",
        extras={
            **clean.extras,
            "noise_samples": count,
            "noise_std": noise_std,
            "chunks": math.ceil(len(noisy) / chunk),
        },
    )
