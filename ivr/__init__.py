"""Voice IVR and speech service."""

import os

# Numpy's many small products (sentence embeddings, audio) run in several worker threads at
# once: BLAS threads of their own only contend for the same cores (5x the CPU here).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
