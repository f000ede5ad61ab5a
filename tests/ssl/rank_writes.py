"""Run the dinomed CLI recording every file this process creates or replaces (torchrun child, for the tests).

Python's audit hooks see ``open`` for writing, ``os.mkdir``, ``os.rename`` / ``os.replace`` and ``os.remove``;
the paths under ``$DINOMED_WATCH`` are written as JSON lines to ``$DINOMED_WRITES_<RANK>`` at exit.
"""

from __future__ import annotations

import atexit
import json
import os
import sys

WATCH = os.path.realpath(os.environ["DINOMED_WATCH"])
RANK = os.environ.get("RANK", "0")
WRITES: list[str] = []


def _hook(event: str, args: tuple) -> None:
    if event == "open":
        path, mode = args[0], args[1]
        writing = isinstance(mode, str) and any(m in mode for m in "wax+")
        writing = writing or (isinstance(args[2], int) and args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
    else:
        path, writing = args[1] if event == "os.rename" else args[0], event in ("os.mkdir", "os.rename", "os.remove")
    if writing and isinstance(path, (str, bytes, os.PathLike)):
        full = os.path.realpath(os.fsdecode(path))
        if full.startswith(WATCH):
            WRITES.append(f"{event} {full}")


def _dump() -> None:
    with open(os.environ[f"DINOMED_WRITES_{RANK}"], "w", encoding="utf-8") as handle:  # outside WATCH
        json.dump(WRITES, handle)


if __name__ == "__main__":
    atexit.register(_dump)
    sys.addaudithook(_hook)
    from dinomed.cli import main

    main(sys.argv[1:])
