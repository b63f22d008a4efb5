"""One CPU thread pool for Numba's kernels and PyTorch's (MKL, oneDNN, ATen) work.

The problem: a deepops CPU convolution alternates Numba ``prange`` loops (im2col, col2im) with MKL GEMMs run by
PyTorch.  Numba's default threading layer here is OpenMP (TBB is tried first but is rarely installed; ``workqueue``
is last), and PyTorch's Linux wheels ship their own copy of GNU OpenMP (``torch/lib/libgomp.so.1``) while Numba's
``omppool`` links the system's ``libgomp.so.1.0.0``.  Two OpenMP runtimes mean two pools of N threads each, and a
GNU OpenMP worker does not sleep when its parallel region ends: it spins (``GOMP_SPINCOUNT``, 300 000 ``pause``
iterations, milliseconds on recent Xeons) waiting for more work.  So the MKL threads burn the cores that the next
Numba loop needs and vice versa.  It is worst when the machine is busy: on the shared 2-core CI box (load ~8) a
spinning OpenMP barrier held a core for a whole scheduler quantum, so a 100 k-element Numba ``prange`` or a small
``torch.matmul`` took ~20 ms per call instead of ~0.2 ms (0.2 ms with ``OMP_WAIT_POLICY=PASSIVE``).

The fix: before Numba first starts its OpenMP pool, promote PyTorch's already loaded ``libgomp`` to the global
symbol scope (``dlopen(RTLD_NOLOAD | RTLD_GLOBAL)``).  Numba's ``omppool`` then binds ``GOMP_parallel`` and the
``omp_*`` functions to PyTorch's runtime (checked with ``LD_DEBUG=bindings``), so Numba's loops and MKL's GEMMs
run on the same pool of ``torch.get_num_threads()`` threads, one after the other, never competing.  The other
layers do not fix this: ``workqueue`` threads sleep on a condition variable (they do not spin) but the layer aborts
the process when two Python threads launch parallel kernels at once (deepops must be usable from several threads),
and ``tbb`` is a third pool.  So deepops puts ``omp`` first in Numba's layer priority unless the user has chosen
(``NUMBA_THREADING_LAYER`` / ``NUMBA_THREADING_LAYER_PRIORITY``).

Nothing here is needed for correctness; where it cannot apply (no GNU OpenMP in torch, Numba's pool already started,
another platform) deepops simply runs with two pools.  ``deepops.info()`` reports the threading layer.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys

import torch

#: set by :func:`share_openmp_pool`: whether Numba will use PyTorch's OpenMP runtime
SHARED_OPENMP = False


def share_openmp_pool() -> bool:
    global SHARED_OPENMP
    if not sys.platform.startswith("linux"):
        return False
    import numba

    if not any(k in os.environ for k in ("NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY")):
        prio = list(getattr(numba.config, "THREADING_LAYER_PRIORITY", []))
        if "omp" in prio:
            numba.config.THREADING_LAYER_PRIORITY = ["omp"] + [p for p in prio if p != "omp"]
    if "numba.np.ufunc.omppool" in sys.modules:  # Numba's OpenMP pool is already bound to its own runtime
        return False
    lib_dir = os.path.join(os.path.dirname(torch.__file__), "lib")
    for path in sorted(glob.glob(os.path.join(lib_dir, "libgomp*.so*"))):
        try:
            ctypes.CDLL(path, mode=os.RTLD_GLOBAL | getattr(os, "RTLD_NOLOAD", 4))
        except OSError:  # not the runtime torch loaded
            continue
        SHARED_OPENMP = True
        _start_numba_pool()
        return True
    return False


def _start_numba_pool() -> None:
    """Start Numba's pool now, then undo its side effects on the shared runtime.

    Numba's omp layer calls ``omp_set_num_threads(NUMBA_NUM_THREADS)`` when it starts, which on the shared runtime
    would override a ``torch.set_num_threads`` made before; so it starts here, at import, and PyTorch's count is
    put back.  Numba's kernels then use as many threads as PyTorch (``numba.set_num_threads``).
    """
    import numba

    before = torch.get_num_threads()
    try:
        from numba.np.ufunc import parallel

        parallel._launch_threads()
    except Exception:  # a private API: without it Numba starts its pool lazily, as usual
        return
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)
    numba.set_num_threads(max(1, min(before, numba.config.NUMBA_NUM_THREADS)))
