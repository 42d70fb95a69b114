"""Sweeps of any long command (``-m``): expansion, the sweep folder and its launchers.

One module shared by every command that accepts ``-m``: the swept values are expanded with
Hydra's override grammar, each job is an ordinary run folder under
``<out>/multirun/<sweep name>/``, and the jobs run one after the other (``launcher=basic``)
or through submitit (``launcher=submitit_local`` / ``launcher=submitit_slurm``).

* :mod:`~vlmrm.sweep.expand`: the jobs of a command line (quoted prompts, ``goal_file=``);
* :mod:`~vlmrm.sweep.settings`: :class:`~vlmrm.sweep.settings.LauncherSettings`, the ``launcher.*`` keys and their ``--help``;
* :mod:`~vlmrm.sweep.state`: ``sweep.json``, updated atomically under a file lock;
* :mod:`~vlmrm.sweep.commands`: the sweepable commands, how each places and resumes a job;
* :mod:`~vlmrm.sweep.job`: one job, and submitit's checkpoint/requeue protocol;
* :mod:`~vlmrm.sweep.launchers`: ``basic``, ``submitit_local``, ``submitit_slurm``;
* :mod:`~vlmrm.sweep.cli`: :func:`~vlmrm.sweep.cli.multirun`, the entry :func:`vlmrm.cli.args.run` hands ``-m`` to.

Nothing here is imported by ``import vlmrm``; a command imports it for ``-m`` and ``--help``.
"""
