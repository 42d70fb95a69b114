"""RLCF zero-shot classification: its settings, the adaptation (:mod:`.adapt`, with the CoOp
prompt learner of :mod:`.prompt`) and the run step of ``task=classify`` (:mod:`.run`)."""
