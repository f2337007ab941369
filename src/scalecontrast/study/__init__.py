"""Studies: does a setting (MS+CS at a tuned weight) beat cross-entropy on *your* model and data?

A spec (:func:`load_spec`) names the recipe, an optional tune phase (a setting chosen on val) and the
compare arms scored on test, paired by seed. :func:`run_study` runs the trials that are left on an Optuna
storage shared by any number of workers and machines; :func:`study_status` says what is left;
:func:`write_report` writes the tables and figures. See docs/studies.md.
"""

from scalecontrast.study.report import write_report
from scalecontrast.study.runner import open_storage, open_study, run_study, study_status
from scalecontrast.study.spec import SpecError, StudySpec, load_spec, parse_spec
from scalecontrast.study.stats import paired_stats

__all__ = ["SpecError", "StudySpec", "load_spec", "open_storage", "open_study", "paired_stats", "parse_spec",
           "run_study", "study_status", "write_report"]
