"""Evaluation: a model scored on a dataset (``evaluate``), with reports, fairness tables and calibration, which
share one model pass (``runner``). The metrics are :mod:`agegender.metrics` (shared with training); paper
reproduction and packaging are in :mod:`agegender.workflows`."""
