"""Stand-in SLURM commands for tests: ``sbatch`` runs the submitted job array on this machine.

:func:`install` writes ``sbatch``, ``srun``, ``sacct``, ``squeue``, ``scancel`` and
``scontrol`` into a folder for ``PATH``. ``sbatch`` keeps a copy of each script it is given
(``sbatch_<id>.sh``), answers ``Submitted batch job <id>`` at once (submitit writes the job
pickles after that) and runs the array's tasks one after another in a detached process,
with the ``SLURM_*`` variables a real allocation sets; ``sacct`` reports the states it
recorded (``RUNNING``/``COMPLETED``/``FAILED``).
"""

from __future__ import annotations

import sys
from pathlib import Path

SBATCH = r'''
import os, re, subprocess, sys
from pathlib import Path
here = Path(__file__).resolve().parent
script = Path(sys.argv[-1]).read_text()
counter = here / "next_id"
job = int(counter.read_text()) if counter.exists() else 4200
counter.write_text(str(job + 100))
(here / f"sbatch_{job}.sh").write_text(script)
m = re.search(r"^#SBATCH --array=(\d+)-(\d+)", script, re.M)
tasks = range(int(m.group(1)), int(m.group(2)) + 1) if m else [None]
runner = f"""
import os, subprocess
from pathlib import Path
here = Path({str(here)!r})
for task in {list(tasks)!r}:
    key = f"{job}_{{task}}" if task is not None else "{job}"
    (here / f"state_{{key}}").write_text("RUNNING")
    env = dict(os.environ, SLURM_JOB_ID=str({job} + 1 + (task or 0)), SLURM_NTASKS="1", SLURM_PROCID="0",
               SLURM_LOCALID="0", SLURM_NODEID="0", SLURM_JOB_NUM_NODES="1", SLURM_JOB_NODELIST="localhost")
    if task is not None:
        env.update(SLURM_ARRAY_JOB_ID="{job}", SLURM_ARRAY_TASK_ID=str(task))
    code = subprocess.call(["bash", "-c", {script!r}], env=env)
    (here / f"state_{{key}}").write_text("COMPLETED" if code == 0 else "FAILED")
"""
subprocess.Popen([sys.executable, "-c", runner], start_new_session=True,
                 stdout=subprocess.DEVNULL, stderr=open(here / f"runner_{job}.log", "w"))
print(f"Submitted batch job {job}")
'''

SRUN = r'''
import os, subprocess, sys
args = sys.argv[1:]
out = err = None
while args and args[0].startswith("-"):
    flag = args.pop(0)
    if flag in ("--output", "--error"):
        value = args.pop(0)
        for k, v in (("%A", os.environ.get("SLURM_ARRAY_JOB_ID", "")), ("%a", os.environ.get("SLURM_ARRAY_TASK_ID", "")),
                     ("%j", os.environ.get("SLURM_JOB_ID", "")), ("%t", "0")):
            value = value.replace(k, v)
        if flag == "--output":
            out = value
        else:
            err = value
stdout = open(out, "a") if out else None
stderr = open(err, "a") if err else None
sys.exit(subprocess.call(args, stdout=stdout, stderr=stderr))
'''

SACCT = r'''
import sys
from pathlib import Path
here = Path(__file__).resolve().parent
ids = [sys.argv[i + 1] for i, a in enumerate(sys.argv) if a == "-j"]
print("JobID|State|NodeList")
for path in sorted(here.glob("state_*")):
    key = path.name.removeprefix("state_")
    if key.split("_")[0] in ids:
        print(f"{key}|{path.read_text()}|localhost")
'''

QUIET = r'''
import sys
from pathlib import Path
with open(Path(__file__).resolve().parent / "calls.log", "a") as fh:
    fh.write(" ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) + "\n")
'''


def install(folder: Path) -> Path:
    """Write the stand-in commands into ``folder``; returns it (put it first on ``PATH``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in (("sbatch", SBATCH), ("srun", SRUN), ("sacct", SACCT), ("squeue", QUIET),
                       ("scancel", QUIET), ("scontrol", QUIET)):
        path = folder / name
        path.write_text(f"#!{sys.executable}\n{body.lstrip()}")
        path.chmod(0o755)
    return folder
