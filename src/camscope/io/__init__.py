"""Reading and writing files; every write is atomic (temporary file, then rename)."""

from __future__ import annotations

from camscope.io.atomic import atomic_write, prepare_output_dir, write_json, write_npz

__all__ = ["atomic_write", "prepare_output_dir", "write_json", "write_npz"]
