"""Old module paths of moved modules, importable for one release with a warning.

When a module moves (``vlmrm.tune.losses`` into a sub-package, say), user code that
imports the old path must keep working for a release and be told where the module went.
A forwarding file per old path would leave the old layout standing beside the new one;
instead :data:`MOVED_MODULES` lists every old path once, and a finder on ``sys.meta_path``
(installed by ``import vlmrm``) answers an import of an old path with the module at its
new path — the same module object, so its classes and globals are shared, not copied —
after a :class:`DeprecationWarning` that names the new path. Where some names of an old
module went elsewhere (:data:`MOVED_NAMES`), the old path is a stand-in that reads the new
module through and finds those names in their new homes.

Commands are not listed here: a command keeps its ``python -m`` path by living at it (a
package's ``__main__``), since ``runpy`` runs a module's code, which an alias has none of.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType

#: old dotted module path → new dotted module path
MOVED_MODULES: dict[str, str] = {
    # the sweeps of every command, moved out of the training package
    "vlmrm.agents.sweep": "vlmrm.sweep.expand",
    # the tuning package, regrouped into data, objectives, vsr, eval, finetune, rollouts
    "vlmrm.tune.augment": "vlmrm.tune.data.augment",
    "vlmrm.tune.build_sets": "vlmrm.tune.data.ranked_sets",
    "vlmrm.tune.caption_data": "vlmrm.tune.data.captions",
    "vlmrm.tune.eval_run": "vlmrm.tune.eval.run",
    "vlmrm.tune.eval_settings": "vlmrm.tune.eval.settings",
    "vlmrm.tune.evaluate": "vlmrm.tune.eval.metrics",
    "vlmrm.tune.finetune_checkpoint": "vlmrm.tune.finetune.checkpoint",
    "vlmrm.tune.finetune_run": "vlmrm.tune.finetune.run",
    "vlmrm.tune.finetune_settings": "vlmrm.tune.finetune.settings",
    "vlmrm.tune.losses": "vlmrm.tune.objectives.losses",
    "vlmrm.tune.predicates": "vlmrm.tune.rollouts.predicates",
    "vlmrm.tune.records": "vlmrm.tune.data.records",
    "vlmrm.tune.retrieval": "vlmrm.tune.eval.retrieval",
    "vlmrm.tune.rollout_data": "vlmrm.tune.rollouts.frames",
    "vlmrm.tune.rollout_dataset": "vlmrm.tune.rollouts.dataset",
    "vlmrm.tune.rollout_settings": "vlmrm.tune.rollouts.settings",
    "vlmrm.tune.scorer": "vlmrm.tune.objectives.scorer",
    "vlmrm.tune.units": "vlmrm.tune.run_data",
    "vlmrm.tune.vsr_relations": "vlmrm.tune.vsr.relations",
    # test-time adaptation, regrouped into core, classification, retrieval, captioning, jobs
    "vlmrm.tta.base": "vlmrm.tta.core.adapter",
    "vlmrm.tta.caption": "vlmrm.tta.captioning.adapt",
    "vlmrm.tta.classify": "vlmrm.tta.classification.adapt",
    "vlmrm.tta.coop": "vlmrm.datasets.coop",
    "vlmrm.tta.coord": "vlmrm.tta.jobs.coord",
    "vlmrm.tta.data": "vlmrm.tta.retrieval.data",
    "vlmrm.tta.feedback": "vlmrm.tta.core.feedback",
    "vlmrm.tta.hparams": "vlmrm.tta.settings",
    "vlmrm.tta.imagenet": "vlmrm.datasets.imagenet",
    "vlmrm.tta.params": "vlmrm.tta.core.episodic",
    "vlmrm.tta.prompt": "vlmrm.tta.classification.prompt",
    "vlmrm.tta.report": "vlmrm.tta.jobs.report",
    "vlmrm.tta.results": "vlmrm.tta.jobs.results",
    "vlmrm.tta.retrieve": "vlmrm.tta.retrieval.adapt",
    "vlmrm.tta.rlcf": "vlmrm.tta.core.rlcf",
    "vlmrm.tta.run_caption": "vlmrm.tta.captioning.run",
    "vlmrm.tta.run_classify": "vlmrm.tta.classification.run",
    "vlmrm.tta.run_retrieve": "vlmrm.tta.retrieval.run",
    "vlmrm.tta.runner": "vlmrm.tta.jobs.job",
    "vlmrm.tta.views": "vlmrm.tta.core.views",
}

#: old dotted module path → {module a name went to: names}: the names an old module had that
#: its new module does not (they went to a task's own module, or to the datasets). An old
#: path listed here imports as a stand-in module of that path: the new module's names read
#: through, and each of these names warns with its own new home.
MOVED_NAMES: dict[str, dict[str, tuple[str, ...]]] = {
    "vlmrm.agents.sweep": {"vlmrm.sweep.cli": ("summary_table",)},
    "vlmrm.tta.coop": {"vlmrm.tta.settings": ("FINEGRAINED_PRESET",)},
    "vlmrm.tta.data": {
        "vlmrm.datasets.annotations": ("read_annotation_json",),
        "vlmrm.datasets.classes": (
            "CLASSNAMES_FILE", "IMAGE_EXTENSIONS", "ClassificationData", "load_class_folders",
        ),
        "vlmrm.datasets.images": ("image_paths", "image_root"),
        "vlmrm.tta.jobs.results": ("abspath",),
    },
    "vlmrm.tta.hparams": {
        "vlmrm.policy_gradient": ("ADVANTAGES",),
        "vlmrm.tta.captioning.settings": ("DECODINGS",),
        "vlmrm.tta.classification.settings": ("DEFAULT_LR", "MODES", "OBJECTIVES"),
        "vlmrm.tta.core.settings": (
            "PARAM_GROUPS", "SAMPLING", "check_ema", "check_fraction", "check_k", "check_rlcf_settings",
        ),
        "vlmrm.tta.retrieval.settings": ("DEFAULT_K", "DIRECTIONS", "normalize_direction"),
    },
    "vlmrm.tta.report": {
        "vlmrm.tta.captioning.run": ("CAPTIONS", "ZEROSHOT_CAPTIONS", "caption_metrics"),
        "vlmrm.tta.classification.run": ("classify_metrics",),
        "vlmrm.tta.retrieval.run": ("retrieve_metrics",),
    },
    "vlmrm.tta.runner": {"vlmrm.tta.cli": ("run",)},
    "vlmrm.tune.caption_data": {"vlmrm.datasets.hf": ("HF_SUFFIXES",)},
}  # fmt: skip


def _stand_in(old: str, new: ModuleType, homes: dict[str, tuple[str, ...]]) -> ModuleType:
    """A module named ``old`` that reads ``new``'s names through and warns for the others."""
    from vlmrm.runtime.lazy import moved_attributes

    module = ModuleType(old, new.__doc__)
    moved_getattr, moved_dir = moved_attributes(old, homes, stacklevel=3)  # past this __getattr__

    def __getattr__(name: str) -> object:
        try:
            return getattr(new, name)
        except AttributeError:
            return moved_getattr(name)

    module.__getattr__ = __getattr__  # type: ignore[method-assign]  # PEP 562
    module.__dir__ = lambda: sorted(set(dir(new)) | set(moved_dir()))  # type: ignore[method-assign]
    return module


class _Alias(importlib.abc.Loader):
    """Loads an old path as the module at its new path (after a deprecation warning)."""

    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(
            f"module {self.old} moved to {self.new}; import {self.new} (the old path goes "
            "in the next release)",
            DeprecationWarning,
            stacklevel=2,
        )
        new = importlib.import_module(self.new)
        self.spec = new.__spec__
        homes = MOVED_NAMES.get(self.old)
        return new if homes is None else _stand_in(self.old, new, homes)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module at the new path is already imported. The import system
        has just given it the old path's spec; the module at the new path gets its own back,
        so that its ``__spec__`` still says where it lives (``find_spec``, ``reload``)."""
        if module.__name__ == self.new:
            module.__spec__ = self.spec


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds the old paths of :data:`MOVED_MODULES` (and nothing else)."""

    def find_spec(self, fullname: str, path: object = None, target: object = None):
        new = MOVED_MODULES.get(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(fullname, new))


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (after the standard finders: an old path
    that still exists as a file is imported as that file)."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
