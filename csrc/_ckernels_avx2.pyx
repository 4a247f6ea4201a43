# The kernels of _ckernels.pyx compiled a second time with -mavx2 (setup.py), as the module
# minireg._ckernels_avx2; minireg.kernels.compiled picks it on CPUs with AVX2. 256-bit vectors,
# no FMA contraction: every operation rounds as in the baseline build, so both give the same bits.
include "_ckernels.pyx"
