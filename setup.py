"""Build script for dtxfast's compiled kernels.

Every ``ext/<name>.pyx`` becomes ``dtxfast._kernels.<name>``. Each ``.pyx`` declares the
libraries it links in its own ``# distutils:`` header, so adding a kernel needs no edit here.

The kernels are optional: when a C compiler, Cython or a system header (``gmp.h`` from Debian's
``libgmp-dev``, ``openssl/*.h`` from ``libssl-dev``) is missing, the build warns and dtxfast
installs with its pure-Python reference backend (``dtxfast.backend_info()`` says why).
Set ``DTX_REQUIRE_EXTENSIONS=1`` to make a failed kernel build an error (CI does).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent
REQUIRE = os.environ.get("DTX_REQUIRE_EXTENSIONS", "") not in ("", "0")
# Developers: DTX_KERNELS=_merkle,_psi builds only those kernels (faster iteration).
ONLY = {k for k in os.environ.get("DTX_KERNELS", "").split(",") if k}


def _extensions() -> list[Extension]:
    try:
        from Cython.Build import cythonize
    except ImportError:
        if REQUIRE:
            raise
        print("dtxfast: Cython not available; installing the pure-Python backend only", file=sys.stderr)
        return []
    exts = [
        Extension(
            f"dtxfast._kernels.{pyx.stem}",
            sources=[str(pyx.relative_to(HERE))],
            include_dirs=["ext"],
            depends=[str(h.relative_to(HERE)) for h in sorted((HERE / "ext").glob("*.h"))],
            extra_compile_args=["-O3", "-fopenmp"],
            extra_link_args=["-fopenmp"],
        )
        for pyx in sorted((HERE / "ext").glob("*.pyx"))
        if not ONLY or pyx.stem in ONLY
    ]
    return cythonize(
        exts,
        include_path=["ext"],
        build_dir="build/cython",
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
        quiet=True,
    )


class OptionalBuildExt(build_ext):
    """Build each kernel if possible; a failure leaves the pure-Python backend in charge."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # compiler missing entirely
            self._fail("all kernels", exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._fail(ext.name, exc)

    def _fail(self, what: str, exc: Exception) -> None:
        if REQUIRE:
            raise exc
        print(
            f"dtxfast: WARNING: could not build {what} ({exc}); "
            "the pure-Python backend will be used. On Debian: apt-get install build-essential "
            "libgmp-dev libssl-dev",
            file=sys.stderr,
        )


setup(
    ext_modules=_extensions(),
    cmdclass={"build_ext": OptionalBuildExt},
    package_dir={"": "src", "dtxfast._benchsuite": "bench"},
    packages=[
        *__import__("setuptools").find_packages("src"),
        "dtxfast._benchsuite",
    ],
)
