"""cloudbench: statistically rigorous cloud-vs-local studies of neural-network training.

The one import name of the toolkit. Its subpackages are the repository's top-level
folders, mapped by pyproject.toml's package-dir (the folders show the pipeline: study,
runners, analysis, paper, with data and protocols on the kernel's side and cli wiring
them), so ``cloudbench.study`` is ``study/`` and so on.
"""

__version__ = "0.1.0"

# In the source tree the subpackages are this folder's siblings: look for them there too,
# so a checkout works on PYTHONPATH alone (a kernel with another interpreter, tox's
# statistics floor) exactly as an installed copy, where they are this folder's children.
import os as _os

_TREE = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_TREE, "study", "spec.py")) and \
        _os.path.isfile(_os.path.join(_TREE, "runners", "base.py")):
    __path__.append(_TREE)
del _os, _TREE
