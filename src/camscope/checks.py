"""Checks of what users pass in: the input batch against the model."""

from __future__ import annotations

import torch
from torch import nn

from camscope.errors import InputError

__all__ = ["check_inputs"]


def _model_placement(model: nn.Module) -> tuple[torch.device | None, torch.dtype | None]:
    for parameter in model.parameters():
        return parameter.device, parameter.dtype
    for buffer in model.buffers():
        if buffer.is_floating_point():
            return buffer.device, buffer.dtype
    return None, None


def check_inputs(model: nn.Module, inputs: object) -> torch.Tensor:
    """Validate a batch and place it on the model's device.

    Returns:
        The batch, detached, on the model's device (a copy only when it had to move).

    Raises:
        InputError: not a tensor, wrong rank, not floating point, dtype different from the model's,
            empty, or containing NaN/Inf.
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    if not isinstance(inputs, torch.Tensor):
        hint = " (convert with torch.from_numpy)" if type(inputs).__module__ == "numpy" else ""
        raise InputError(f"inputs must be a torch.Tensor, not {type(inputs).__name__}{hint}")
    if inputs.ndim not in (4, 5):
        raise InputError(
            f"inputs must be images (B, C, H, W) or volumes (B, C, D, H, W), got shape "
            f"{tuple(inputs.shape)}; add a batch axis with x[None] or a channel axis with "
            "x[:, None]"
        )
    if inputs.shape[0] == 0:
        raise InputError("inputs hold no sample (batch size 0)")
    if not inputs.is_floating_point():
        raise InputError(
            f"inputs must be floating point, got {inputs.dtype}; convert with x.float() "
            "(and scale as the model expects)"
        )
    device, dtype = _model_placement(model)
    if dtype is not None and inputs.dtype != dtype:
        raise InputError(
            f"inputs are {inputs.dtype} but the model's parameters are {dtype}; convert one to "
            "the other (x.to(dtype) or model.to(dtype))"
        )
    if inputs.is_inference():
        with torch.inference_mode(False):
            inputs = inputs.clone()
    inputs = inputs.detach()
    if device is not None and inputs.device != device:
        inputs = inputs.to(device)
    finite = torch.isfinite(inputs)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise InputError(
            f"inputs contain {bad} NaN or infinite value(s); clean or mask them before explaining"
        )
    return inputs
