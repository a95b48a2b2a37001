"""colearn benchmarks: run each as ``python -m bench.<name> [--quick]`` from the repository root.

One BLAS/OpenMP thread per process, so that "one learner = one core" holds and the physical limit
of a round (which divides the voters' work by the number of cores) means what it says.
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
