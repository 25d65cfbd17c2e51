"""Time the main job: ``glyph demo`` from a fresh ``GLYPH_HOME``, then again with its caches.

    python tools/bench_demo.py --runs 2 --out benchmarks/demo.md [--keep-eval docs/default-run]

Each run is a separate ``glyph demo`` process in an empty temporary ``GLYPH_HOME`` (so the
tokenizer and the tiny base are built, as on a fresh clone), followed by a second ``glyph
demo`` in the same home (base and tokenizer cached: what a user's second call costs). Wall
time, CPU time and peak RSS come from the operating system's accounting of the finished
process (``os.wait4``); the 1-minute load average before each run says whether the machine
was quiet. Writes a Markdown table with the command.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one(home: Path) -> dict:
    """Run ``glyph demo`` once in ``home``; wall/cpu seconds, peak RSS (MB), load before."""
    glyph = Path(sys.executable).with_name("glyph")
    env = {**os.environ, "GLYPH_HOME": str(home)}
    env.pop("GLYPH_RUN", None)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(glyph), "demo"], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"glyph demo failed:\n{err[-2000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "rss_mb": usage.ru_maxrss / 1024, "load": load}


def table(rows: list[dict]) -> list[str]:
    out = ["| run | wall (s) | CPU (s) | peak RSS (MB) | load before |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['kind']} | {r['wall']:.0f} | {r['cpu']:.0f} | {r['rss_mb']:.0f} | "
                   f"{r['load']:.2f} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2, help="fresh homes to time (each + a cached run)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "demo.md")
    ap.add_argument("--keep-eval", type=Path, default=None,
                    help="copy the first fresh run's evaluation (report, plots) here")
    a = ap.parse_args()
    rows = []
    for i in range(a.runs):
        home = Path(tempfile.mkdtemp(prefix="glyph-demo-home-"))
        try:
            for kind in ("fresh GLYPH_HOME", "second run (cached base)"):
                rows.append({"kind": kind, **one(home)})
                print(rows[-1], file=sys.stderr, flush=True)
                if a.keep_eval and i == 0 and kind.startswith("fresh"):
                    shutil.copytree(home / "runs" / "default" / "eval", a.keep_eval,
                                    dirs_exist_ok=True)
        finally:
            shutil.rmtree(home, ignore_errors=True)
    med = {k: statistics.median(r["wall"] for r in rows if r["kind"] == k)
           for k in ("fresh GLYPH_HOME", "second run (cached base)")}
    lines = [
        "# The main job: `glyph demo`", "",
        f"Command: `python tools/bench_demo.py --runs {a.runs} --out benchmarks/demo.md`", "",
        f"Machine: {os.cpu_count()} CPU cores, Python {platform.python_version()}; each run a "
        "separate process, timed by the OS (`os.wait4`: wall, user+sys CPU, peak RSS).", "",
        *table(rows), "",
        f"Median wall time: **{med['fresh GLYPH_HOME'] / 60:.1f} min** from a fresh "
        f"`GLYPH_HOME` (tokenizer rebuilt, tiny base built, train, index, expand, eval), "
        f"**{med['second run (cached base)'] / 60:.1f} min** with the base cached.", "",
        "A load average above the core count before a run means another process shared the "
        "cores: that run's wall time is an upper bound.", "",
    ]
    a.out.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
