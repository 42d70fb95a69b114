"""Datasets, read once for every command: caption annotations, images, labelled classes.

Fine-tuning (:mod:`vlmrm.tune`), captioning (:mod:`vlmrm.caption`) and test-time adaptation
(:mod:`vlmrm.tta`) read the same public files. Each format is parsed here, once, and each
command keeps only the step that is its own (tune groups captions by image, captioning
keeps raw references and ids, retrieval cleans captions as LAVIS does):

* :mod:`.annotations` — a caption annotation file of any format → :class:`CaptionRecord` s;
* :mod:`.hf` — a local Hugging Face caption dataset → the same records;
* :mod:`.images` — the one image resolver: where an annotation file's images are;
* :mod:`.classes` — class-folder datasets and the class names CLIP reads for them;
* :mod:`.imagenet` — ImageNet's class names (for its variants' folders);
* :mod:`.coop` — CoOp's fine-grained split files, FGVCAircraft and CoOp's ImageNet.

Torch-free, and below every command: nothing here imports tune, tta or caption.
"""

from __future__ import annotations

from vlmrm.runtime.lazy import lazy_attributes

_EXPORTS = {
    ".annotations": ("AnnotationFile", "CaptionRecord", "read_annotations", "select_split"),
    ".hf": ("read_hf",),
    ".images": ("find_images", "image_root"),
    ".classes": ("ClassificationData", "load_class_folders"),
    ".imagenet": ("imagenet_classnames", "imagenet_wnid_to_name"),
    ".coop": ("load_coop_dataset", "load_coop_split"),
}

__all__ = sorted(name for names in _EXPORTS.values() for name in names)

__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS)
