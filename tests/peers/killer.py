"""A manifest tool that kills the process that started it (a Claw's worker) with SIGKILL:
`python killer.py MARKER` does it only while MARKER does not exist (and creates it), so the
retried run survives; `python killer.py MARKER always` does it every time."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

marker = Path(sys.argv[1])
if sys.argv[2:] == ["always"] or not marker.exists():
    marker.touch()
    os.kill(os.getppid(), signal.SIGKILL)
print("survived")
