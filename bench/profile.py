"""Profile the server's hot path with py-spy while a phase runs (`./scripts/bench --profile`).

py-spy samples the daphne process from outside (no code change, native frames included with
`--native` off for speed) and writes collapsed stacks; `top()` sums them into the functions that
hold the CPU (self) and that the time passes through (total), as shares of all samples.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path


def py_spy() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


class Recording:
    """`with Recording(pid, out):` samples `pid` into `out` (collapsed stacks) until exit."""

    def __init__(self, pid: int, out: Path, rate: int = 50) -> None:
        self.pid = pid
        self.out = out
        self.rate = rate
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Recording:
        binary = py_spy()
        if binary is None:
            print("py-spy is missing (pip install -e '.[bench]'): no profile.")
            return self
        cmd = [binary, "record", "--pid", str(self.pid), "--rate", str(self.rate)]
        cmd.append("--subprocesses")  # With --workers the pid is the supervisor; they serve.
        cmd += ["--format", "raw", "--output", str(self.out), "--nonblocking", "--threads"]
        self.process = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=self.out.with_suffix(".log").open("w")
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.send_signal(2)  # SIGINT: py-spy writes what it has and exits.
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _name(frame: str) -> str:
    """`func (path/to/file.py:123)` → `func (file.py)`."""
    func, _, where = frame.partition(" (")
    return f"{func} ({Path(where.split(':')[0]).name})" if where else func


def top(collapsed: Path, limit: int = 15) -> dict:
    """Self and total shares (%) of the busiest functions; idle waits are left out."""
    self_time: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    if not collapsed.is_file():
        return {"samples": 0}
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_name(f) for f in stack.split(";")[1:]]  # [0] is the thread
        if not frames or frames[-1].startswith(("select (", "epoll", "wait (", "_worker (")):
            continue
        n = int(count)
        samples += n
        self_time[frames[-1]] += n
        for name in set(frames):
            total[name] += n

    def shares(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / samples, 1)) for k, v in counter.most_common(limit)]

    return {"samples": samples, "self": shares(self_time), "total": shares(total)}
