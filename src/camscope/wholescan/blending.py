"""The band of rows that blends window values into scan-sized maps and hands complete rows on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from camscope.wholescan.windows import WindowPlan

__all__ = ["Blender"]


class Blender:
    """Weighted sums of window values over a band of ``roi`` rows along the first axis, kept in a
    ring buffer: rows no later window can reach are divided by their weight and handed to
    ``write(start, rows)`` (scan coordinates, ``rows`` ``(C, n, *rest)``), so memory holds one
    band of rows, not the scan. Windows must come in the plan's order (sorted along the first
    axis), so every window lies inside the band once the rows before it are handed on.

    ``base`` (padded rows already handed on) lets a resumed run start past them: the parts of
    windows that fall before it are skipped. :meth:`state` and :meth:`restore` save and bring back
    the band itself, so a resumed run goes on from the last window blended, to the same bits.
    """

    def __init__(
        self,
        channels: int,
        plan: WindowPlan,
        weights: torch.Tensor,
        write: Callable[[int, torch.Tensor], None],
        *,
        base: int = 0,
    ) -> None:
        self.plan, self.weights, self.write = plan, weights, write
        self.rows = plan.roi_size[0]
        rest = plan.padded_size[1:]
        self.values = torch.zeros((channels, self.rows, *rest), dtype=weights.dtype)
        self.coverage = torch.zeros((self.rows, *rest), dtype=weights.dtype)
        self.base = base  # the first padded row not yet handed on
        self.crop = tuple(
            slice(b, b + s) for (b, _), s in zip(plan.padding, plan.scan_size, strict=True)
        )

    def _segments(self, start: int, count: int) -> list[tuple[slice, slice]]:
        """Padded rows ``[start, start + count)`` as (ring slice, local slice) pairs."""
        position = start % self.rows
        first = min(count, self.rows - position)
        pieces = [(slice(position, position + first), slice(0, first))]
        if count > first:
            pieces.append((slice(0, count - first), slice(first, count)))
        return pieces

    def add(self, index: int, values: torch.Tensor) -> None:
        """Blend window ``index``'s values ``(C, *roi)``."""
        region = self.plan.slices(index)
        first = region[0].start
        if first > self.base:
            self._flush(first - self.base)
        skip = max(self.base - first, 0)  # rows a resumed run has already handed on
        if skip >= self.rows:
            return
        for ring, local in self._segments(first + skip, self.rows - skip):
            part = slice(local.start + skip, local.stop + skip)
            weights = self.weights[part]
            self.values[(slice(None), ring, *region[1:])].addcmul_(values[:, part], weights)
            self.coverage[(ring, *region[1:])] += weights

    def _flush(self, count: int) -> None:
        top = self.crop[0]
        for ring, local in self._segments(self.base, min(count, self.rows)):
            begin = self.base + local.start
            rows = range(begin, begin + (local.stop - local.start))
            keep = [r for r in rows if top.start <= r < top.stop]
            if keep:
                inside = slice(ring.start + keep[0] - begin, ring.start + keep[-1] - begin + 1)
                rest = self.crop[1:]
                done = self.values[(slice(None), inside, *rest)] / self.coverage[(inside, *rest)]
                self.write(keep[0] - top.start, done)
            self.values[:, ring] = 0
            self.coverage[ring] = 0
        self.base += count

    def finish(self) -> None:
        """Hand on every remaining row."""
        while self.base < self.plan.padded_size[0]:
            self._flush(min(self.rows, self.plan.padded_size[0] - self.base))

    @property
    def rows_done(self) -> int:
        """Padded rows handed on so far."""
        return self.base

    def state(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The band's weighted sums ``(C, roi_rows, *rest)`` and weights ``(roi_rows, *rest)``
        (views, not copies), with :attr:`rows_done` all a resumed run needs."""
        return self.values, self.coverage

    def restore(self, values: Any, coverage: Any, base: int) -> None:
        """Bring back a band saved from :meth:`state` when ``base`` rows were handed on."""
        self.values.copy_(torch.as_tensor(values))
        self.coverage.copy_(torch.as_tensor(coverage))
        self.base = base
