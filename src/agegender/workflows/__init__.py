"""Workflows: what needs both training and evaluation, in the layer above them.

``train`` (a training run, then its test split scored: ``agegender train``), ``packaging`` (a checkpoint
calibrated into a model file: ``agegender package``), ``refine`` (aminian_noubir's iterative refinement:
``agegender refine``), ``reproduce`` and ``paper_tables`` (a paper's table re-run beside the published one:
``agegender reproduce``). Training and evaluation never import this package.
"""
