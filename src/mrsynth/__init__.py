"""mrsynth: predict a T2-weighted MRI volume from a T1-weighted one (plus tissue masks).

The package is a pipeline of stage packages, each importing only the stages before it (``STAGES``), with the
base utilities at the top level (errors, messages, atomic files, reports, figures, the label table, the
process's device).  ``tests/test_architecture.py`` checks that order, and the README's code map is made from
the stages' docstrings.
"""

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

#: The stage packages in pipeline order: a stage imports only the base utilities and the stages before it.
STAGES = ("io", "networks", "simulate", "masks", "data", "inference", "training", "evaluation", "experiments", "cli")

#: Modules of mrsynth before the stage packages that the README documents, and where they live now.
MOVED = {
    "subjects": "io",
    "cache": "data",
    "patches": "data",
    "normalization": "networks",
    "train": "training",
    "predict": "inference",
    "evaluate": "evaluation",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import mrsynth.cache`` (and the like, :data:`MOVED`) gives the stage package that holds it now."""

    def find_spec(self, name, path=None, target=None):
        prefix, _, rest = name.partition(".")
        if prefix == __name__ and rest in MOVED:
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(f"{__name__}.{MOVED[spec.name.partition('.')[2]]}")

    def exec_module(self, module):
        pass


sys.meta_path.append(_MovedModules())
