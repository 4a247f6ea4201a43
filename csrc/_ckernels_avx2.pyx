# The kernels of _ckernels.pyx compiled a second time with -mavx2 -mfma (setup.py), as the module
# minireg._ckernels_avx2; minireg.kernels.compiled picks it on CPUs with AVX2 and FMA. 256-bit
# vectors; the explicit fma()/fmaf() calls become vfmadd (correctly rounded, as libm's in the
# baseline) and nothing else is contracted (-ffp-contract=off): every operation rounds as in the
# baseline build, so both give the same bits.
include "_ckernels.pyx"
