"""Effective receptive field (Luo et al. 2016) and its Gaussian fit, in 2D and 3D.

The ERF of a layer position is the gradient of that position's activations (summed over channels)
with respect to the input, in absolute value, summed over input channels and averaged over many
inputs. Fitting ``a · exp(−Σ_d (x_d − μ_d)² / 2σ_d²) + b`` to it by least squares (SciPy's
``curve_fit``, Levenberg–Marquardt) gives the widths ``σ_d`` in input pixels that Gaussian
upsampling uses (Kim et al. 2020).

References:
    Luo, Li, Urtasun, Zemel, "Understanding the Effective Receptive Field in Deep Convolutional
    Neural Networks", NeurIPS 2016.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import curve_fit
from torch import nn

from camscope.checks import check_inputs
from camscope.engine import ModelState, record_layer, run_to_layer
from camscope.engine.relay import said_once
from camscope.errors import CamscopeError, InputError, LayerError
from camscope.layers import resolve_layer
from camscope.layouts import LayoutResolver

__all__ = [
    "ReceptiveField",
    "cached_receptive_field",
    "effective_receptive_field",
    "erf_sigmas",
    "fit_gaussian",
]


@dataclass(frozen=True)
class ReceptiveField:
    """An effective receptive field and the Gaussian fitted to it.

    Attributes:
        map: ``(*S)`` averaged ERF in input space (float64, non-negative).
        sigma: fitted width per spatial axis, in input pixels, torch axis order ``(D, H, W)``.
        center: fitted centre per axis, in input pixel coordinates.
        amplitude: fitted peak height ``a``.
        offset: fitted constant ``b``.
        r2: coefficient of determination of the fit.
        layer: the layer's name.
        position: the layer position whose ERF this is.
        n_inputs: how many inputs were averaged.
    """

    map: torch.Tensor
    sigma: tuple[float, ...]
    center: tuple[float, ...]
    amplitude: float
    offset: float
    r2: float
    layer: str
    position: tuple[int, ...]
    n_inputs: int = field(default=0)

    def fitted(self) -> torch.Tensor:
        """The fitted Gaussian evaluated on the map's grid."""
        grids = np.meshgrid(
            *[np.arange(n, dtype=np.float64) for n in self.map.shape], indexing="ij"
        )
        exponent = sum(
            (g - c) ** 2 / (2 * s**2)
            for g, c, s in zip(grids, self.center, self.sigma, strict=True)
        )
        return torch.from_numpy(self.amplitude * np.exp(-exponent) + self.offset)

    def plot(self, path: str | Path | None = None) -> Any:
        """Picture of the ERF (central slice for volumes), the fit, and profiles through the centre.

        Args:
            path: if given, the figure is also written there as PNG (atomically).

        Returns:
            The Matplotlib figure.
        """
        from matplotlib.figure import Figure

        from camscope.io.atomic import atomic_write

        values = self.map.numpy()
        fit = self.fitted().numpy()
        index = tuple(round(c) for c in self.center)
        index = tuple(min(max(i, 0), n - 1) for i, n in zip(index, values.shape, strict=True))
        if values.ndim == 3:
            values, fit = values[index[0]], fit[index[0]]
        figure = Figure(figsize=(12, 3.6))
        axes = figure.subplots(1, 3)
        axes[0].imshow(values, cmap="viridis")
        axes[0].set_title(f"ERF of {self.layer} at {self.position}")
        axes[1].imshow(fit, cmap="viridis")
        sigmas = ", ".join(f"{s:.2f}" for s in self.sigma)
        axes[1].set_title(f"fit: σ = ({sigmas}) px, R² = {self.r2:.4f}")
        names = "DHW"[-self.map.ndim :]
        full = self.map.numpy()
        full_fit = self.fitted().numpy()
        for axis in range(self.map.ndim):
            line = list(index)
            line[axis] = slice(None)  # type: ignore[call-overload]
            axes[2].plot(full[tuple(line)], label=f"ERF along {names[axis]}")
            axes[2].plot(full_fit[tuple(line)], "--", label=f"fit along {names[axis]}")
        axes[2].legend(fontsize=7)
        axes[2].set_title("profiles through the centre")
        for axis in axes[:2]:
            axis.set_xticks([])
            axis.set_yticks([])
        figure.tight_layout()
        if path is not None:
            with atomic_write(path, mode="wb") as handle:
                figure.savefig(handle, format="png", dpi=90)
        return figure


def _layer_position(position: str | Sequence[int], grid: Sequence[int]) -> tuple[int, ...]:
    if isinstance(position, str):
        if position != "center":
            raise InputError(f"position must be 'center' or one index per axis, not {position!r}")
        return tuple(n // 2 for n in grid)
    index = tuple(int(i) for i in position)
    if len(index) != len(grid) or any(not 0 <= i < n for i, n in zip(index, grid, strict=True)):
        raise InputError(f"position {index} is not inside the layer's grid {tuple(grid)}")
    return index


def _gaussian(coordinates: np.ndarray, *parameters: float) -> np.ndarray:
    axes = coordinates.shape[0]
    amplitude, offset = parameters[0], parameters[1]
    centres = np.asarray(parameters[2 : 2 + axes])[:, None]
    sigmas = np.asarray(parameters[2 + axes :])[:, None]
    exponent = ((coordinates - centres) ** 2 / (2 * sigmas**2)).sum(axis=0)
    return amplitude * np.exp(-exponent) + offset


def fit_gaussian(
    values: np.ndarray,
) -> tuple[tuple[float, ...], tuple[float, ...], float, float, float]:
    """Least-squares fit of an axis-aligned Gaussian plus a constant to an n-D array.

    Returns:
        ``(sigma, center, amplitude, offset, r2)``.

    Raises:
        CamscopeError: the array is flat, or the fit does not converge.
    """
    values = np.asarray(values, dtype=np.float64)
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in values.shape], indexing="ij")
    coordinates = np.stack([g.ravel() for g in grids])
    flat = values.ravel()
    low, high = float(flat.min()), float(flat.max())
    if not high > low:
        raise CamscopeError("the receptive field is flat (all gradients equal); nothing to fit")
    weights = flat - low
    total = weights.sum()
    centres = (coordinates * weights).sum(axis=1) / total
    spreads = np.sqrt(((coordinates - centres[:, None]) ** 2 * weights).sum(axis=1) / total)
    initial = [high - low, low, *centres, *np.maximum(spreads, 0.5)]
    try:
        parameters, _ = curve_fit(_gaussian, coordinates, flat, p0=initial, maxfev=20000)
    except (RuntimeError, ValueError) as error:
        raise CamscopeError(f"the Gaussian fit of the receptive field failed: {error}") from error
    model = _gaussian(coordinates, *parameters)
    residual = float(((flat - model) ** 2).sum())
    spread = float(((flat - flat.mean()) ** 2).sum())
    axes = values.ndim
    sigma = tuple(float(abs(s)) for s in parameters[2 + axes :])
    center = tuple(float(c) for c in parameters[2 : 2 + axes])
    return sigma, center, float(parameters[0]), float(parameters[1]), 1.0 - residual / spread


@said_once
def effective_receptive_field(
    model: nn.Module,
    layer: str | nn.Module,
    inputs: torch.Tensor | None = None,
    *,
    position: str | Sequence[int] = "center",
    input_shape: Sequence[int] | None = None,
    n_inputs: int = 16,
    seed: int = 0,
    eval_mode: bool = True,
) -> ReceptiveField:
    """Estimate a layer's effective receptive field and fit a Gaussian to it.

    Args:
        model: the network (left as it was: flags restored, no ``.grad`` written).
        layer: name or module of the layer.
        inputs: a batch ``(B, C, *S)`` of real data to average over; ``None`` draws ``n_inputs``
            standard-normal inputs of ``input_shape`` (seeded).
        position: ``"center"`` (index ``s_d // 2`` on every axis) or one index per layer axis.
        input_shape: ``(C, *S)`` for generated inputs.
        n_inputs: how many inputs to generate.
        seed: seed of the generated inputs.
        eval_mode: run in eval mode (restored afterwards).

    Returns:
        The averaged ERF and its fitted Gaussian (widths in input pixels).

    Raises:
        InputError, LayerError, ModelError, CamscopeError: bad inputs or position, unknown layer,
            a model that raises, a flat or unfittable ERF.

    Example:
        >>> from camscope.models import create_model
        >>> net = create_model("tiny2d", num_classes=3, input_size=32)
        >>> erf = effective_receptive_field(net, "pool2", input_shape=(1, 32, 32))
        >>> len(erf.sigma)
        2
    """
    if inputs is None:
        if input_shape is None:
            raise InputError("give inputs, or input_shape=(C, *S) to draw noise inputs")
        generator = torch.Generator().manual_seed(seed)
        dtype = next((p.dtype for p in model.parameters()), torch.float32)
        inputs = torch.randn(n_inputs, *input_shape, generator=generator, dtype=dtype)
    x = check_inputs(model, inputs)
    name, module = resolve_layer(model, layer)
    with (
        torch.inference_mode(False),
        ModelState(model, eval_mode=eval_mode),
        torch.enable_grad(),
        record_layer(module, name, stop=True, layout=LayoutResolver.of(model, x)) as recording,
    ):
        leaf = x.clone().requires_grad_(True)
        out = run_to_layer(model, leaf, recording)
        index = _layer_position(position, out.shape[2:])
        selector: tuple[slice | int, ...] = (slice(None), slice(None), *index)
        score = out[selector].sum()
        (gradients,) = torch.autograd.grad(score, leaf, allow_unused=True)
    if gradients is None:
        raise LayerError(f"layer {name!r} does not depend on the input")
    erf = gradients.detach().abs().sum(dim=1).mean(dim=0).double().cpu()
    sigma, center, amplitude, offset, r2 = fit_gaussian(erf.numpy())
    return ReceptiveField(
        map=erf,
        sigma=sigma,
        center=center,
        amplitude=amplitude,
        offset=offset,
        r2=r2,
        layer=name,
        position=index,
        n_inputs=x.shape[0],
    )


_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], ReceptiveField]] = (
    weakref.WeakKeyDictionary()
)


def cached_receptive_field(
    model: nn.Module, layer: str, input_shape: Sequence[int]
) -> ReceptiveField:
    """ERF estimated once per (model, layer, input shape, weights) while the process runs.

    The key includes every parameter's version counter, so training the model (any in-place
    update of its weights) makes a fresh estimate.
    """
    versions = tuple(p._version for p in model.parameters())
    key = (layer, tuple(input_shape), versions)
    entries = _CACHE.setdefault(model, {})
    if key not in entries:
        entries.clear()  # an older weight version or shape is not needed again
        entries[key] = effective_receptive_field(model, layer, input_shape=input_shape)
    return entries[key]


def erf_sigmas(
    model: nn.Module, layer: str, input_shape: Sequence[int], size: Sequence[int]
) -> list[float]:
    """Gaussian upsampling widths in output pixels for maps of ``layer`` brought to ``size``:
    the widths of the layer's effective receptive field (estimated once per model, layer, input
    shape and weights per process, on standard-normal inputs), rescaled from input pixels to
    output pixels when ``size`` differs from the input size.

    Raises:
        InputError: ``input_shape`` ``(C, *S)`` does not match ``size``.
    """
    field = cached_receptive_field(model, layer, tuple(input_shape))
    spatial = tuple(input_shape)[1:]
    if len(spatial) != len(size):
        raise InputError(f"input_shape {tuple(input_shape)} does not match size {tuple(size)}")
    return [s * out / inp for s, out, inp in zip(field.sigma, size, spatial, strict=True)]
