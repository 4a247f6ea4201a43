"""Build of the compiled kernels: csrc/_ckernels.pyx -> minireg._ckernels.

Everything else (metadata, packages) lives in pyproject.toml. OpenMP is used only when a test
program actually compiles and links with -fopenmp on the compiler setuptools picked; otherwise
Cython's prange loops run serially.
"""

import os
import platform
import tempfile

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CompileError, LinkError

DEBUG = os.environ.get("MINIREG_CYTHON_DEBUG", "") not in ("", "0")

OPENMP_PROBE = """
#include <omp.h>
int main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }
"""


def compiler_has_openmp(compiler):
    """True when `compiler` compiles and links a program that calls the OpenMP runtime."""
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "openmp_probe.c")
        with open(source, "w") as f:
            f.write(OPENMP_PROBE)
        try:
            objects = compiler.compile([source], output_dir=tmp, extra_postargs=["-fopenmp"])
            compiler.link_executable(objects, "openmp_probe", output_dir=tmp, extra_postargs=["-fopenmp"])
        except (CompileError, LinkError):
            return False
    return True


DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "cdivision": True,
    "initializedcheck": False,
}


class BuildExt(build_ext):
    def build_extensions(self):
        # Cythonized here rather than at module level so the .pyx (not a generated .c) is the
        # extension source that an sdist ships. One C file per mode: cythonize regenerates only
        # when the .pyx is newer, so a shared file would keep the other mode's directives.
        build_dir = os.path.join("build", "cython-debug" if DEBUG else "cython")
        unix = self.compiler.compiler_type == "unix"
        openmp = compiler_has_openmp(self.compiler)
        print(f"minireg: building kernels {'with' if openmp else 'without'} OpenMP")
        for ext in self.extensions:
            (cythonized,) = cythonize(ext, compiler_directives=DIRECTIVES, build_dir=build_dir)
            ext.sources = cythonized.sources
            if unix:
                # -fno-math-errno lets sqrt vectorize (the kernels never read errno): 4x on AdamW;
                # -fno-trapping-math lets loops with a select (the clamp in the mixture kernel's exp)
                # vectorize. Neither changes a result: the kernels never read errno or FP exception flags.
                ext.extra_compile_args += ["-O3", "-fno-math-errno", "-fno-trapping-math"]
                if not DEBUG:
                    # -s: no symbol table or debug info in the shipped .so (1.99 MB -> ~0.35 MB).
                    ext.extra_link_args.append("-s")
            if ext.name.endswith("_avx2"):
                ext.extra_compile_args += AVX2_FLAGS.get(self.compiler.compiler_type, [])
            if openmp:
                ext.extra_compile_args.append("-fopenmp")
                ext.extra_link_args.append("-fopenmp")
        super().build_extensions()


# On x86 the same kernels are built a second time for AVX2 and FMA (csrc/_ckernels_avx2.pyx includes
# _ckernels.pyx), picked at import time on CPUs that have both: 1.5x on the mixture prior's kernel and
# AdamW on a Zen 3. -mfma only turns the kernels' explicit fma()/fmaf() calls into vfmadd (the
# baseline calls libm's, correctly rounded alike); -ffp-contract=off keeps gcc from fusing any other
# a*b + c, so both builds round every operation alike and give the same bits.
X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")
AVX2_FLAGS = {"unix": ["-mavx2", "-mfma", "-ffp-contract=off"], "msvc": ["/arch:AVX2"]}

EXTENSIONS = [Extension("minireg._ckernels", ["csrc/_ckernels.pyx"])]
if X86:
    EXTENSIONS.append(Extension("minireg._ckernels_avx2", ["csrc/_ckernels_avx2.pyx"]))

setup(
    ext_modules=EXTENSIONS,
    cmdclass={"build_ext": BuildExt},
)
