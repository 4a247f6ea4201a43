"""The regularization study: regularizer families compared honestly over seeds.

    python -m minireg study                          # the default task (mlp-digits)
    python -m minireg study --task cnn-fashion --cv 3 --jobs 2
    python -m minireg study --task linear-diabetes
    python -m minireg study --task gan-digits        # what ``gan --compare`` runs

Parts:
- ``tasks``: what is trained (MLP or CNN classification on digits or Fashion-MNIST, linear
  regression on diabetes, a GAN on digits or Fashion-MNIST) with its default and full presets;
- ``families`` (classification), ``linear.LINEAR_FAMILIES`` and ``gan.REGISTRY``: the families,
  each with its strength grid and the grid's source;
- ``runner``: the runs (seeds x strengths x families, each a pure function of its config), the
  results cache, joblib and Dask execution, and the choice of strengths on validation data;
- ``stats``: t-intervals, paired comparisons, medians and quartiles;
- ``report`` and ``plots``: results.json/.csv/.md, report.html and the figures;
- ``linear.regularization_path``: exact lasso / ridge / elastic-net paths by coordinate descent.
"""
from minireg.study.linear import regularization_path
from minireg.study.runner import StudyError, StudyResult, check_options, run_study
from minireg.study.stats import median_iqr, paired, summary, t_interval, t_quantile

__all__ = ["regularization_path", "run_study", "check_options", "StudyResult", "StudyError", "t_interval",
           "t_quantile", "summary", "paired", "median_iqr"]
