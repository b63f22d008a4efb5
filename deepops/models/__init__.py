"""Networks built from deepops' layers.  ``deepops.models.gan``: a DCGAN (generator and discriminator)."""
