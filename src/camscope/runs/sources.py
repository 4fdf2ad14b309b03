"""Where a run's inputs come from: files on disk, or tensors already in memory.

A source is picklable (the Ray backend sends it to its workers) and answers, for input ``i``: its
output name, how to read it (a :class:`~camscope.io.LoadedImage`), its label and ground truth
if any, and its *identity*: what a resumed run compares before it reuses a record. A file is
identified by its resolved path, size and modification time; a tensor by a digest of its values.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from camscope.errors import InputError
from camscope.io.inputs import LoadedImage, read_image
from camscope.runs.records import output_names

__all__ = ["FileSource", "Source", "TensorSource"]


@dataclass
class Source:
    """Inputs in a fixed order, with optional labels and ground truths.

    Attributes:
        names: a unique output name per input.
        labels: a class per input (explained and evaluated), or ``None``.
        truths: a boolean mask ``(*S)`` or a box ``(2·n,)`` per input, or ``None``.
    """

    names: list[str]
    labels: list[int] | None = None
    truths: list[torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.names, list | tuple) or not all(
            isinstance(name, str) for name in self.names
        ):
            raise InputError(
                f"a source's names must be a list of strings, not {type(self.names).__name__}; "
                "for a tensor use TensorSource.from_tensor(inputs), for files "
                "FileSource.from_paths(paths)"
            )
        self.names = list(self.names)
        for what, values in (("labels", self.labels), ("ground truths", self.truths)):
            if values is not None and len(values) != len(self.names):
                raise InputError(f"{len(values)} {what} for {len(self.names)} inputs")

    def __len__(self) -> int:
        return len(self.names)

    def read(self, index: int) -> LoadedImage:
        """Input ``index`` as camscope holds it (data and geometry)."""
        raise NotImplementedError

    def identity(self, index: int) -> dict[str, Any]:
        """What a resumed run compares before reusing input ``index``'s record."""
        raise NotImplementedError

    def where(self, index: int) -> str:
        """How to name input ``index`` in messages."""
        return self.names[index]


@dataclass
class FileSource(Source):
    """Files read with :func:`camscope.io.read_image`."""

    paths: list[str] = field(default_factory=list)
    read_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_paths(
        cls,
        paths: Sequence[str | os.PathLike[str]],
        *,
        root: str | os.PathLike[str] | None = None,
        labels: Sequence[int] | None = None,
        truths: Sequence[torch.Tensor] | None = None,
        **read_options: Any,
    ) -> FileSource:
        """Files named by their path relative to ``root`` (see :func:`output_names`)."""
        return cls(
            names=output_names(paths, root),
            labels=None if labels is None else [int(v) for v in labels],
            truths=None if truths is None else list(truths),
            paths=[str(p) for p in paths],
            read_options=dict(read_options),
        )

    def read(self, index: int) -> LoadedImage:
        """Read file ``index`` with the source's read options."""
        return read_image(self.paths[index], **self.read_options)

    def identity(self, index: int) -> dict[str, Any]:
        """The file's resolved path, size and modification time."""
        path = Path(self.paths[index])
        try:
            status = path.stat()
        except OSError:
            return {"path": str(path.resolve())}
        if path.is_dir():  # a DICOM series: its files' sizes and times
            files = sorted(p for p in path.iterdir() if p.is_file())
            status_list = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
            digest = hashlib.sha256(repr(status_list).encode()).hexdigest()[:16]
            return {"path": str(path.resolve()), "files": digest}
        return {
            "path": str(path.resolve()),
            "size": status.st_size,
            "mtime_ns": status.st_mtime_ns,
        }

    def where(self, index: int) -> str:
        """Where input ``index`` came from, for messages."""
        return self.paths[index]


@dataclass
class TensorSource(Source):
    """Samples of a tensor ``(N, C, *S)`` in memory."""

    inputs: torch.Tensor | None = None

    @classmethod
    def from_tensor(
        cls,
        inputs: torch.Tensor,
        *,
        labels: Sequence[int] | torch.Tensor | None = None,
        truths: torch.Tensor | None = None,
    ) -> TensorSource:
        """A source over the samples of a ``(N, C, *S)`` tensor."""
        width = len(str(max(len(inputs) - 1, 0)))
        return cls(
            names=[f"sample{i:0{width}d}" for i in range(len(inputs))],
            labels=None if labels is None else [int(v) for v in labels],
            truths=None if truths is None else list(truths),
            inputs=inputs.detach().cpu(),
        )

    def read(self, index: int) -> LoadedImage:
        """Sample ``index`` of the tensor."""
        assert self.inputs is not None
        data = self.inputs[index].numpy()
        return LoadedImage(data=np.ascontiguousarray(data), path=self.names[index], format="tensor")

    def identity(self, index: int) -> dict[str, Any]:
        """A digest of the sample's values."""
        assert self.inputs is not None
        values = self.inputs[index].contiguous().numpy().tobytes()
        return {"sha256": hashlib.sha256(values).hexdigest()[:32]}
