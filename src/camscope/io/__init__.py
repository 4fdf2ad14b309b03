"""Files in and out; every write is atomic (temporary file, then rename).

* :mod:`~camscope.io.inputs`: read images and volumes (PNG/JPEG/TIFF/DICOM/NIfTI/MRC/NumPy) as a
  :class:`LoadedImage` with their geometry.
* :mod:`~camscope.io.heatmaps`: write heatmaps as NIfTI/MRC/TIFF/PNG/NPY aligned with their scan.
* :mod:`~camscope.io.models`: load models safely (TorchScript, torch.export, state dicts).
* :mod:`~camscope.io.checkpoints`: camscope's own model files (safetensors + JSON).
* :mod:`~camscope.io.atomic`: atomic writes, output folders.
"""

from __future__ import annotations

from camscope.io.atomic import atomic_write, prepare_output_dir, write_json, write_npz
from camscope.io.checkpoints import load_model, save_model
from camscope.io.heatmaps import HEATMAP_FORMATS, write_heatmap
from camscope.io.inputs import LoadedImage, read_image, read_input
from camscope.io.inputs import __getattr__ as __getattr__  # the old names, with a warning
from camscope.io.models import build_architecture, load_model_spec

__all__ = [
    "HEATMAP_FORMATS",
    "LoadedImage",
    "atomic_write",
    "build_architecture",
    "load_model",
    "load_model_spec",
    "prepare_output_dir",
    "read_image",
    "read_input",
    "save_model",
    "write_heatmap",
    "write_json",
    "write_npz",
]
