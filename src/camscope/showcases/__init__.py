"""Showcases: camscope used end to end on a whole problem, each a command (``camscope showcase``).

* :mod:`~camscope.showcases.tomogram`: a simulated cryo-ET tomogram explained window by window
  with the reproduction's CNN-2; pointing game and detection per particle, per method.
* :mod:`~camscope.showcases.lesions`: a MONAI UNet trained here on the MNI152 T1 template with
  synthetic lesions, explained window by window with one region target per lesion.
* :mod:`~camscope.showcases.pages`: the figures and HTML page every showcase ends with.
"""
