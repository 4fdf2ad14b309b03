"""Reproductions of the seed papers' experiments (``camscope reproduce ...``)."""
