"""The command line's argument types, one place for every command: a path that the system
could never open (a NUL in it, a name over the file system's limit) or a number out of its
range is refused by argparse (exit 2, the argument named), not by a traceback later.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

#: Linux's PATH_MAX and NAME_MAX, in bytes: longer paths fail in every system call.
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255
MAX_SEED = 2**63 - 1


def path_arg(text: str) -> Path:
    """A path argument the operating system can take (it need not exist yet)."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path")
    if "\x00" in text:
        raise argparse.ArgumentTypeError(f"a path cannot hold a NUL character: {text!r}")
    try:
        encoded = os.fsencode(text)
    except UnicodeError:
        raise argparse.ArgumentTypeError(f"not a path this system can encode: "
                                         f"{text[:100]!r}") from None
    if len(encoded) > MAX_PATH_BYTES:
        raise argparse.ArgumentTypeError(f"a path of {len(encoded):,} bytes, over the "
                                         f"system's limit of {MAX_PATH_BYTES} "
                                         f"({text[:60]!r}...)")
    longest = max(encoded.split(b"/"), key=len)
    if len(longest) > MAX_NAME_BYTES:
        raise argparse.ArgumentTypeError(f"a name of {len(longest):,} bytes in the path, over "
                                         f"the system's limit of {MAX_NAME_BYTES} "
                                         f"({os.fsdecode(longest[:60])!r}...)")
    return Path(text)


def seed_arg(text: str) -> int:
    """A random seed: a whole number from 0 (numpy's generators take no negative seed)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be from 0 to {MAX_SEED}, got {text}")
    return value
