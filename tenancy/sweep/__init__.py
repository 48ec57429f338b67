"""`tenancy sweep`: expand scenario files and suites into runs, and run them into one study.

A study directory holds one run directory per expanded scenario (named after the run) plus
`study.json` and `sweep.csv`, one row per run with its status. A run whose directory already
holds a complete manifest for the same scenario is skipped, so an interrupted sweep resumes by
running the same command again, with any executor; anything else found there (a partial, failed
or outdated run) is moved to `_aside/` first, never mixed with the new samples. One failing run
does not stop the others.

  discover.py  files and matrices -> named runs, the A/A control    plan.py     resolve, refuse, estimate
  resume.py    complete already? set aside what is not              index.py    study.json, sweep.csv, task rows
  task.py      one run, wherever it executes                        progress.py the bars
  local.py     in this process, or one run per GPU at once          slurm.py    job arrays through submitit
"""
from tenancy.sweep.discover import CONTROL_PREFIX, expand_all, scenario_files, select, with_control
from tenancy.sweep.index import STUDY_JSON, SWEEP_CSV, Study
from tenancy.sweep.plan import Overrides, Planned, dry_run_table, plan
from tenancy.sweep.resume import ASIDE, existing_status, set_aside

__all__ = ["ASIDE", "CONTROL_PREFIX", "STUDY_JSON", "SWEEP_CSV", "Overrides", "Planned", "Study", "dry_run_table",
           "existing_status", "expand_all", "plan", "scenario_files", "select", "set_aside", "with_control"]


def __getattr__(name: str):
    if name == "run_study":
        from tenancy.sweep.local import run_study

        return run_study
    raise AttributeError(name)
