"""The training progress bar: env steps of the run, ending exactly at ``total_steps``.

SB3's own bar counts the steps of one ``learn`` call and keeps counting past its budget
(the step that ends an off-policy run is counted too: 2,008 of 2,000). This one shows the
run's step count (a resumed run starts where it stopped), never passes ``total_steps``,
and in a log file (stderr not a terminal) prints a line at most every 30 seconds.
"""

from __future__ import annotations

import sys

from stable_baselines3.common.callbacks import BaseCallback


class StepProgress(BaseCallback):
    """A tqdm bar over ``num_timesteps``, clamped to ``total_steps``."""

    def __init__(self, total_steps: int) -> None:
        super().__init__()
        self.total_steps = int(total_steps)
        self.bar = None

    def _on_training_start(self) -> None:
        from tqdm.auto import tqdm

        tty = sys.stderr.isatty()
        self.bar = tqdm(total=self.total_steps, initial=min(self.model.num_timesteps, self.total_steps),
                        unit="step", dynamic_ncols=tty, mininterval=0.1 if tty else 30.0, file=sys.stderr)

    def _on_step(self) -> bool:
        self._update()
        return True

    def _update(self) -> None:
        if self.bar is not None:
            self.bar.update(min(self.model.num_timesteps, self.total_steps) - self.bar.n)

    def close(self, steps: int) -> None:
        """Show the run's final step count (after an unstored last step was taken back)."""
        if self.bar is not None:
            self.bar.n = min(int(steps), self.total_steps)
            self.bar.close()
            self.bar = None
