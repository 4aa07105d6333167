"""The report: runs -> the paper's tables and figures beside the paper's own numbers.

``python -m l0repro.report [--runs DIR] [--out DIR] [--wandb ENTITY/PROJECT]``.
Modules: ``paper`` (the paper's numbers, from ``paper.yaml``), ``sources`` (run directories
and wandb runs), ``runs`` (which runs count and how they group), ``tables``, ``figures``,
``index`` (the output README), ``build`` (one report end to end).
"""
