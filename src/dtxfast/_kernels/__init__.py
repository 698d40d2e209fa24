"""Compiled kernels (L0), built from ``ext/*.pyx``. Private: use the primitives in dtxfast.crypto."""
