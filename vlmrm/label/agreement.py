"""``python -m vlmrm.label.agreement``: how well a CLIP reward agrees with human labels.

Usage (``key=value`` settings; the bare argument is the filled CSV)::

    python -m vlmrm.label.agreement sheets/labels.csv goal="a humanoid robot kneeling" \\
        baseline="a humanoid robot" alpha=[0,0.5,1] model=ViT-B-32/openai

Reads the ``labels.csv`` of a sheet folder (``python -m vlmrm.label``) once a person has
filled its ``label`` column, scores the labelled frames with the CLIP reward and prints
ROC-AUC, Spearman, Pearson and EPIC distance against the labels (every frame, and per
video: success rate vs mean reward). Writes ``agreement.json`` and ``rewards.csv``.
"""

from __future__ import annotations

from vlmrm.cli.args import Command, entry_point
from vlmrm.label.settings import AgreementSettings

COMMAND = Command(
    prog="python -m vlmrm.label.agreement",
    settings=AgreementSettings,
    summary=(
        "Score the frames of a filled labelling sheet with a CLIP reward and report its agreement "
        "with the human labels (ROC-AUC, Spearman, Pearson, EPIC distance), as the VLM-RM paper "
        "evaluated success. Writes agreement.json and rewards.csv."
    ),
    examples=(
        "python -m vlmrm.label.agreement sheets/labels.csv goal='a humanoid robot kneeling' "
        "baseline='a humanoid robot' alpha=[0,0.5,1]",
    ),
    positional="labels",
)


def _body(settings: AgreementSettings) -> int:
    from vlmrm.label.agreement_run import label_agreement
    from vlmrm.label.report import print_agreement
    from vlmrm.runtime.console import make_console

    print_agreement(label_agreement(settings), make_console())
    return 0


main = entry_point(COMMAND, _body)

if __name__ == "__main__":
    raise SystemExit(main())
