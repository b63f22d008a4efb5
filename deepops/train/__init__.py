"""Training support shared by the model families (classifier, detector, GAN): see ``common``."""
