"""A real chest radiograph with synthetic lesions pasted at known places.

The radiograph is ``RG1_UNCR.dcm`` from the ``pydicom-data`` package (pydicom's test data), read
with :func:`camscope.io.read_image`: modality and VOI LUTs applied, MONOCHROME1 inverted (bones
bright), scaled to [0, 1] and resized to 256² with anti-aliasing (scikit-image). Crops of the
lung fields get, half of them, a nodule-like Gaussian blob; its box is the ground truth.
Deterministic in the seed.
"""

from __future__ import annotations

import functools

import numpy as np

from camscope.errors import CamscopeError

__all__ = ["LESION_CONTRAST", "chest_radiograph", "lesion_crops"]

#: Peak brightness of a pasted lesion, on the radiograph's [0, 1] scale (drawn uniformly).
LESION_CONTRAST = (0.25, 0.4)


@functools.lru_cache(maxsize=1)
def chest_radiograph(size: int = 256) -> np.ndarray:
    """The radiograph as float32 ``(size, size)`` in [0, 1], bones bright.

    Raises:
        CamscopeError: pydicom or pydicom-data is not installed.
    """
    import importlib.resources

    from skimage.transform import resize

    from camscope.io.inputs import read_image

    try:
        path = importlib.resources.files("data_store") / "data" / "RG1_UNCR.dcm"
    except ModuleNotFoundError as error:
        raise CamscopeError(
            "the chest radiograph needs pydicom-data: pip install pydicom-data "
            "(./scripts/setup installs it)"
        ) from error
    # Modality and VOI LUTs, MONOCHROME1 inverted, scaled to [0, 1]: camscope's DICOM reader.
    pixels = read_image(str(path), dicom_window="auto").data[0].astype(np.float64)
    return resize(pixels, (size, size), anti_aliasing=True).astype(np.float32)


def lesion_crops(
    count: int, *, seed: int = 0, crop: int = 48, offset: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crops of the lung fields, alternately without (label 0) and with a lesion (label 1).

    Returns:
        ``(images (count, 1, crop, crop) z-scored, labels (count,), boxes (count, 4))``; the box
        of a crop without lesion is all zeros.
    """
    image = chest_radiograph()
    images, labels, boxes = [], [], []
    for item in range(offset, offset + count):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 7, item]))
        top = int(rng.integers(30, 200 - crop))
        left = int(rng.integers(25, 230 - crop))
        patch = image[top : top + crop, left : left + crop].astype(np.float64).copy()
        label = item % 2
        box = np.zeros(4, dtype=np.int64)
        if label:
            sigma = rng.uniform(1.5, 3.0)
            cy, cx = rng.uniform(3 * sigma + 1, crop - 3 * sigma - 1, 2)
            y, x = np.mgrid[0:crop, 0:crop]
            radius2 = (y - cy) ** 2 + (x - cx) ** 2
            patch += rng.uniform(*LESION_CONTRAST) * np.exp(-radius2 / (2 * sigma**2))
            rows, columns = np.nonzero(radius2 <= (2 * sigma) ** 2)
            box = np.array([rows.min(), columns.min(), rows.max() + 1, columns.max() + 1])
        patch = (patch - patch.mean()) / (patch.std() + 1e-12)
        images.append(patch.astype(np.float32)[None])
        labels.append(label)
        boxes.append(box)
    return np.stack(images), np.array(labels), np.stack(boxes)
