"""Data sets and generators (``deepops.data.simcep``: synthetic fluorescence nuclei with exact ground truth)."""
