"""RLCF image–text retrieval: its settings, its test data (:mod:`.data`), the adaptation
against a precomputed gallery (:mod:`.adapt`) and the run step of ``task=retrieve`` (:mod:`.run`)."""
