"""``python -m vlmrm.study``: a sweep folder into a table with confidence intervals.

Reads ``sweep.json`` and each run's evaluations, groups the jobs by their swept settings
other than ``seed`` and reports the IQM over seeds with a stratified bootstrap interval.
"""
