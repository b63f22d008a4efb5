"""``deepops bench``: deepops against its peers (PyTorch CPU and CUDA/cuDNN, torchvision, NumPy) and against the
hardware's limits.  Workloads are registered by the ``cases_*`` modules of this package; see ``core`` for how
timing is done and ``runner`` for the command."""
