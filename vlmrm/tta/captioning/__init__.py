"""RLCF captioning: its settings, the adaptation of a CLIP-prefix captioner's mapper
(:mod:`.adapt`) and the run step of ``task=caption`` (:mod:`.run`)."""
