"""Make this Python blind to the project's working tree, like a remote host.

The tests put this folder on PYTHONPATH of the processes that stand for a remote machine
(the kernel gateway's kernels, the stand-in Colab VM). Python imports it at start-up, after
the site packages: it removes the editable install's finder and any path inside the project,
so only code that was staged to the "remote" side can be imported there.
"""

import os
import sys

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _inside(path: str) -> bool:
    path = os.path.abspath(path or os.getcwd())
    return path == _REPO or path.startswith(_REPO + os.sep)


sys.meta_path[:] = [f for f in sys.meta_path
                    if not getattr(f, "__module__", "").startswith("__editable__")]
sys.path_hooks[:] = [h for h in sys.path_hooks
                     if not getattr(h, "__module__", "").startswith("__editable__")]
sys.path[:] = [p for p in sys.path if not _inside(p) or p.endswith("hide_repo")]
sys.path_importer_cache.clear()
