"""Atomic file writes: a temporary name in the same folder, then a rename.

Everything the toolkit writes (records, runs.csv, manifests, the analysis JSON, tables,
figures, the paper's stamp) goes through here, so a killed process never leaves half a
file and a reader never sees one. Standard library only: the timed kernel imports it too.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# mkstemp makes files only their owner can read; the files written here get the mode any
# other new file would (0666 less the umask), so a shared results folder stays readable.
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | os.PathLike[str], fsync: bool = False) -> Iterator[Path]:
    """A temporary path to write; it replaces `path` when the block ends without error.

    For writers that want a file name (matplotlib's savefig, pandas' to_csv).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix,
                               dir=target.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)
    os.close(fd)
    try:
        yield Path(tmp)
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, fsync: bool = False) -> None:
    with atomic_path(path, fsync) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike[str], text: str, fsync: bool = False) -> None:
    write_bytes_atomic(path, text.encode("utf-8"), fsync)


def write_json_atomic(path: str | os.PathLike[str], data: Any, indent: int = 1,
                      sort_keys: bool = True) -> None:
    """JSON, fsynced: records and manifests are the study's truth."""
    text = json.dumps(data, indent=indent, sort_keys=sort_keys, default=str)
    write_text_atomic(path, text + "\n", fsync=True)
