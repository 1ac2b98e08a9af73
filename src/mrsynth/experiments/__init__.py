"""Experiments: whole studies and dataset runs made of the stages before it, each one command with a report.

:mod:`.reproduce` runs the paper's experiment grid (Tables 1-3, Figures 3-5), checked against the paper's
numbers by :mod:`.paper`; :mod:`.crossval` cross-validates a configuration over subjects against the lookup
baselines; :mod:`.demo` is the main job on the embedded default data (``make demo``); :mod:`.bids_app` runs a
whole BIDS dataset as a BIDS App (``mrsynth bids``), with a report per participant from :mod:`.report`.
"""
