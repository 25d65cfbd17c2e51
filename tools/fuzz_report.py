"""Run glyph's fuzz tests with more inputs and write their figures to benchmarks/fuzz.md.

    python tools/fuzz_report.py --scale 10 [--random] [--out benchmarks/fuzz.md]

Runs ``tests/test_fuzz_*.py`` with ``GLYPH_FUZZ_EXAMPLES=<scale>`` (× the per-test examples
CI runs), collects the tally every fuzz test keeps (inputs per target, outcome classes, time)
and writes a Markdown table. ``--random`` searches with fresh randomness instead of the
suite's derandomized profile. The exit code is pytest's: any failure is a finding.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(scale: float, random: bool) -> tuple[int, dict, float]:
    tally = os.path.join(tempfile.mkdtemp(prefix="glyph-fuzz-"), "tally.json")
    env = {**os.environ, "GLYPH_FUZZ_EXAMPLES": str(scale), "GLYPH_FUZZ_REPORT": tally,
           "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           *sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_fuzz_*.py"))]
    if random:
        cmd.append("--hypothesis-profile=explore")
    t0 = time.time()
    code = subprocess.call(cmd, cwd=REPO, env=env)
    seconds = time.time() - t0
    merged: dict = {}
    if os.path.exists(tally):
        for target, d in json.loads(Path(tally).read_text(encoding="utf-8")).items():
            merged[target] = {**d, "outcomes": Counter(d["outcomes"])}
    return code, merged, seconds


def markdown(merged: dict, seconds: float, scale: float, random: bool, code: int) -> str:
    total = sum(m["inputs"] for m in merged.values())
    lines = [
        "# Fuzzing glyph's readers and commands",
        "",
        f"`python tools/fuzz_report.py --scale {scale:g}{' --random' if random else ''}` on "
        f"{os.cpu_count()} CPU cores, Python {platform.python_version()}: **{total:,} inputs** "
        f"to {len(merged)} targets in {seconds:.0f} s, "
        f"{'no failure' if code == 0 else f'pytest exit code {code} — see its output'}.",
        "",
        "The rule for every input: a success or one `GlyphError` line — never another "
        "exception, never a hang (each call bounded at 30 s), never a changed file on error "
        "(checked byte for byte where the target writes). CI runs the same tests with "
        "`--scale 1`.",
        "",
        "| target | inputs | ok | refused | distinct refusals | seconds |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for target, m in sorted(merged.items()):
        ok = m["outcomes"].get("ok", 0)
        classes = [k for k in m["outcomes"] if k != "ok"]
        lines.append(f"| {target} | {m['inputs']:,} | {ok:,} | {m['inputs'] - ok:,} | "
                     f"{len(classes)} | {m['seconds']:.1f} |")
    lines += ["", "## What refused them (most frequent first)", "",
              "A class is the check that refused the input — `module:line` of the raise (the "
              "library targets) or the first words of the error line (the commands) — with the "
              "opening words of one such message.", ""]
    for target, m in sorted(merged.items()):
        top = [(k, n) for k, n in m["outcomes"].most_common() if k != "ok"][:10]
        if not top:
            continue
        ex = m.get("examples", {})
        lines.append(f"**{target}**: " + "; ".join(
            f"{k}{' “' + ex[k] + '…”' if ex.get(k) else ''} ({n})" for k, n in top))
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=10.0)
    ap.add_argument("--random", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "fuzz.md")
    a = ap.parse_args()
    code, merged, seconds = run(a.scale, a.random)
    text = markdown(merged, seconds, a.scale, a.random, code) + "\n"
    a.out.write_text(text.encode("utf-8", "backslashreplace").decode("utf-8"), encoding="utf-8")
    print(f"wrote {a.out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
