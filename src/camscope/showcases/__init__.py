"""Showcases: camscope used end to end on a whole problem, each a command (``camscope showcase``).

* :mod:`~camscope.showcases.tomogram`: a simulated cryo-ET tomogram explained window by window
  with the reproduction's CNN-2; pointing game and detection per particle, per method.
"""
