"""Reference architectures and small test networks, by name.

``list_models()`` gives the names, ``create_model(name, **options)`` builds one (random weights,
seeded by ``torch.manual_seed``; training comes with the simulator).
"""

from __future__ import annotations

from camscope.models.cecte import CNN1, CNN2, cnn1, cnn2
from camscope.models.registry import create_model, list_models, register_model
from camscope.models.small import SmallCNN, tiny2d, tiny2d_gap, tiny3d, tiny3d_gap
from camscope.models.vit import VisionTransformer, vit2d, vit3d

__all__ = [
    "CNN1",
    "CNN2",
    "SmallCNN",
    "VisionTransformer",
    "cnn1",
    "cnn2",
    "create_model",
    "list_models",
    "register_model",
    "tiny2d",
    "tiny2d_gap",
    "tiny3d",
    "tiny3d_gap",
    "vit2d",
    "vit3d",
]
