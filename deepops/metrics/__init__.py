"""Evaluation measures that work offline: the Fréchet distance (``frechet``) and the GAN score built on it
(``gan_score``: Fréchet distance in our digits classifier's feature space, confidence, class spread)."""

from .frechet import frechet_distance, frechet_distance_features, gaussian_stats

__all__ = ["frechet_distance", "frechet_distance_features", "gaussian_stats"]
