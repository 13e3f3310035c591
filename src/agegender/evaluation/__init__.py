"""Evaluation: metrics, protocols, reports, fairness and calibration, paper tables."""
