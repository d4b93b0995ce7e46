"""Offline evaluation of the relevance model (`flashes evaluate`, bench/injection.py): not part of any service.

It scores provider files with the relevance service's own model, a client of it like any other
(services/relevance/model.py, series.py, formula.py), and compares the model with two baselines
against labelled events: `methods` (the three methods on one series), `metrics` (latency, recall,
false-alert episodes, level selection), `run` (a mirror folder in-sample and cross-validated) and
`report` (the table `flashes evaluate` prints).
"""
