"""A real trained CNN on a real image: MTCNN's ONet (facenet-pytorch) on scikit-image's astronaut.

ONet is the last stage of MTCNN (Zhang et al. 2016): a 48×48 face / non-face classifier, trained
and shipped with its weights (``facenet_pytorch/data/onet.pt``). :class:`FaceClassifier` exposes
its face/non-face logits as an ordinary 2-class classifier (class 1 = face). The astronaut
photograph (public domain, NASA; bundled with scikit-image) has one face whose box is known, so
crops of it give inputs with ground-truth face boxes.

Install with ``pip install --no-deps facenet-pytorch==2.6.0 requests`` (its own requirements pin
an old torch); ``scripts/setup`` does.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from camscope.errors import CamscopeError

__all__ = ["FACE_BOX", "FaceClassifier", "astronaut_face_crops"]

#: The astronaut's face (forehead to chin, cheek to cheek) in the 512² image: (y0, x0, y1, x1).
FACE_BOX = (75, 185, 175, 272)


class FaceClassifier(nn.Module):
    """ONet's trunk and its face/non-face head, returning logits ``(B, 2)``.

    Layer names are ONet's under ``onet.`` (``onet.conv4``, ``onet.prelu4`` ...). Inputs are RGB
    48×48 scaled as MTCNN does: ``(pixel − 127.5) / 128``.
    """

    def __init__(self) -> None:
        super().__init__()
        try:
            from facenet_pytorch.models.mtcnn import ONet
        except ImportError as error:
            raise CamscopeError(
                "MTCNN's ONet needs facenet-pytorch: pip install --no-deps facenet-pytorch==2.6.0 "
                "requests (./scripts/setup installs it)"
            ) from error
        self.onet = ONet(pretrained=True)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Two logits (no face, face) for ``(B, 3, 48, 48)`` crops."""
        net = self.onet
        x = net.pool1(net.prelu1(net.conv1(x)))
        x = net.pool2(net.prelu2(net.conv2(x)))
        x = net.pool3(net.prelu3(net.conv3(x)))
        x = net.prelu4(net.conv4(x))
        x = x.permute(0, 3, 2, 1).contiguous()  # as ONet does before its dense layers
        x = net.prelu5(net.dense5(x.view(x.shape[0], -1)))
        return net.dense6_1(x)


def astronaut_face_crops(count: int = 12, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Square crops around the astronaut's face, jittered in place and size, resized to 48².

    Returns:
        ``(inputs (count, 3, 48, 48), boxes (count, 4))``: MTCNN-scaled RGB and the face box in
        each crop's pixel indices (half-open).
    """
    import skimage.data

    image = torch.from_numpy(skimage.data.astronaut().astype(np.float32)).permute(2, 0, 1)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 48]))
    y0, x0, y1, x1 = FACE_BOX
    inputs, boxes = [], []
    for _ in range(count):
        half = int(rng.integers(66, 80))
        cy = int((y0 + y1) / 2 + rng.integers(-8, 9))
        cx = int((x0 + x1) / 2 + rng.integers(-8, 9))
        top, left = cy - half, cx - half
        crop = image[:, top : top + 2 * half, left : left + 2 * half][None]
        resized = nn.functional.interpolate(crop, size=(48, 48), mode="area")
        inputs.append((resized[0] - 127.5) * 0.0078125)
        scale = 48 / (2 * half)
        box = [
            max(0, int(np.floor((y0 - top) * scale))),
            max(0, int(np.floor((x0 - left) * scale))),
            min(48, int(np.ceil((y1 - top) * scale))),
            min(48, int(np.ceil((x1 - left) * scale))),
        ]
        boxes.append(box)
    return torch.stack(inputs), torch.tensor(boxes)
