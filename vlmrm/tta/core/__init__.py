"""The RLCF core every task shares: the objective (sampling K answers, REINFORCE with a mean
baseline), augmented views, the reward CLIPs (:class:`~vlmrm.tta.core.feedback.CLIPFeedback`),
per-sample copies of the adapted weights and the adapter base class.

Nothing here knows a task or a run: the tasks (:mod:`vlmrm.tta.classification`,
:mod:`vlmrm.tta.retrieval`, :mod:`vlmrm.tta.captioning`) build on it.
"""
