"""The runner every TTA task's run step uses: it shards the pending samples over the ranks
(:mod:`.job`), keeps and resumes the results (:mod:`.results`), coordinates the ranks
(:mod:`.coord`) and writes the report (:mod:`.report`). It imports no task."""
