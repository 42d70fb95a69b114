"""Infrastructure every long job shares, one copy each.

- :mod:`~vlmrm.runtime.stop`: graceful stop on Ctrl-C / SIGTERM (:class:`GracefulStop`);
- :mod:`~vlmrm.runtime.atomic`: write a file completely, then publish it by one rename;
- :mod:`~vlmrm.runtime.units`: checkpoints as folders published whole, verified on load;
- :mod:`~vlmrm.runtime.cache`: caches of computed tensors, keyed, atomic, rebuilt when damaged;
- :mod:`~vlmrm.runtime.lock`: one writer per run folder (an OS lock held for the run's life);
- :mod:`~vlmrm.runtime.storage`: full disk, read-only, quota, permission → one line naming the
  folder and what was kept;
- :mod:`~vlmrm.runtime.epilogue`: a job's closing line, once, last on screen under torchrun;
- :mod:`~vlmrm.runtime.images`: read any image file as RGB ``uint8``, write PNGs;
- :mod:`~vlmrm.runtime.paths`: why an input path cannot be opened (missing, broken link, loop).

Video reading and writing live in :mod:`vlmrm.video`; distributed agree/gather in
:mod:`vlmrm.distributed`. Nothing here imports torch at import time (the cache loads it
when it reads or writes one).
"""
