"""Study statistics (``reprtools stats``): can the study say "equivalent", and do representation shifts track
task scores?

One module per concern: :mod:`.scores` turns a study's ``results.csv`` into cell-level scores and paired blocks,
:mod:`.tests` holds the classical tests (per-cell ANOVA, Welch, Kruskal--Wallis; Friedman; paired Wilcoxon against
LoRA with Holm's correction and effect sizes), :mod:`.equivalence` the paired TOST and the verdicts,
:mod:`.linear` the clustered linear model, :mod:`.power` the smallest reachable p-values and minimum detectable
effects, :mod:`.behaviour` the layer-wise link between representation shift and score change, :mod:`.tables`
the CSV and booktabs writing, :mod:`.figures` the figures (score vs ratio, transfer vs retention per cell, the
forest plot of the verdicts, the layer profile), and :mod:`.run` the whole analysis of a study directory.
"""
