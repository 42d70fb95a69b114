"""Sweeps of any long command (``-m``): expansion, the sweep folder and its launchers.

One module shared by every command that accepts ``-m``: the swept values are expanded with
Hydra's override grammar, each job is an ordinary run folder under
``<out>/multirun/<sweep name>/``, and the jobs run one after the other (``launcher=basic``)
or through submitit (``launcher=submitit_local`` / ``launcher=submitit_slurm``).
"""
