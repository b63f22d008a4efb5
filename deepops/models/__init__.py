"""Models built from deepops layers (``deepops.models.detector``: the cell detector)."""
