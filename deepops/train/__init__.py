"""Training of the model families: the one loop every family plugs into (``loop``), its building blocks
(``common``: seeding, devices, torchrun, checkpoints), the learning-rate schedules (``schedule``) and the families
(``classifier``, ``detector``, ``gan``)."""
