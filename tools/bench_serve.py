"""Load test of `glyph serve` on loopback: 1, 4, 16, 64 concurrent streaming clients.

Starts `glyph serve RUN` as a subprocess on a free 127.0.0.1 port, then for each concurrency
level runs N clients, each sending R streamed /v1/completions requests one after another
(mixed prompts: a glyph with a scene header, a glyph in text, two triggers together, plain
text). Measures generated tokens/s (from the usage chunk), latency and time to first token
(p50/p99), 429 refusals, errors, lost or hung requests (no answer within --timeout), and the
server's resident memory (sampled every 0.2 s). Bounded: a fixed number of requests, each
with a timeout; loopback only. Writes benchmarks/serve.md (or --out) and a JSON twin.

    python tools/bench_serve.py                     # the embedded default run
    python tools/bench_serve.py --run runs/mine --clients 1,4,16,64 --requests 4
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Sampler(threading.Thread):
    """The server's RSS every 0.2 s (peak and last)."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.last, self.running = pid, 0.0, 0.0, True

    def run(self) -> None:
        while self.running:
            self.last = rss_mb(self.pid)
            self.peak = max(self.peak, self.last)
            time.sleep(0.2)


def prompts(glyphs: list[dict]) -> list[str]:
    a, b = glyphs[0]["symbol"], glyphs[-1]["symbol"]
    other = next((g["symbol"] for g in glyphs if g["trigger"] != glyphs[0]["trigger"]), b)
    return [f"{a}\n⟨poetry · meso · en⟩\n", f"the floor gives way and {b}",
            f"{a} and {other} meet at dawn", "The house is quiet; the stairs go up and"]


async def one(client: httpx.AsyncClient, url: str, model: str, prompt: str, seed: int,
              max_tokens: int, timeout: float) -> dict:
    t0 = time.perf_counter()
    first, tokens = None, 0
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.8,
            "seed": seed, "stream": True, "stream_options": {"include_usage": True}}
    try:
        async with asyncio.timeout(timeout):
            async with client.stream("POST", url, json=body) as r:
                if r.status_code == 429:
                    await r.aread()
                    return {"status": "refused", "retry_after": r.headers.get("retry-after")}
                if r.status_code != 200:
                    await r.aread()
                    return {"status": "error", "code": r.status_code, "body": r.text[:200]}
                done = False
                async for line in r.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    if line == "data: [DONE]":
                        done = True
                        break
                    chunk = json.loads(line[6:])
                    if chunk.get("choices") and chunk["choices"][0].get("text") and first is None:
                        first = time.perf_counter() - t0
                    if chunk.get("usage"):
                        tokens = chunk["usage"]["completion_tokens"]
                if not done:
                    return {"status": "lost"}
    except TimeoutError:
        return {"status": "hung"}
    except httpx.HTTPError as e:
        return {"status": "error", "body": repr(e)}
    return {"status": "ok", "latency": time.perf_counter() - t0,
            "ttft": first if first is not None else time.perf_counter() - t0, "tokens": tokens}


async def level(base: str, model: str, texts: list[str], clients: int, requests: int,
                max_tokens: int, timeout: float) -> tuple[list[dict], float]:
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout) as client:
        async def worker(c: int) -> list[dict]:
            out = []
            for j in range(requests):
                out.append(await one(client, "/v1/completions", model,
                                     texts[(c + j) % len(texts)], 1000 * c + j, max_tokens,
                                     timeout))
            return out

        t0 = time.perf_counter()
        results = await asyncio.gather(*(worker(c) for c in range(clients)))
        return [r for rs in results for r in rs], time.perf_counter() - t0


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def summarise(clients: int, requests: int, res: list[dict], wall: float, mem: dict) -> dict:
    ok = [r for r in res if r["status"] == "ok"]
    tokens = sum(r["tokens"] for r in ok)
    count = {s: sum(r["status"] == s for r in res) for s in ("ok", "refused", "error", "lost",
                                                             "hung")}
    return {"clients": clients, "requests": len(res), **count, "tokens": tokens,
            "seconds": round(wall, 2), "tokens_per_s": round(tokens / wall, 1),
            "latency_p50": round(pct([r["latency"] for r in ok], 50), 3),
            "latency_p99": round(pct([r["latency"] for r in ok], 99), 3),
            "ttft_p50": round(pct([r["ttft"] for r in ok], 50), 3),
            "ttft_p99": round(pct([r["ttft"] for r in ok], 99), 3), **mem}


def start_server(run: Path, port: int, args: list[str], log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "glyph.cli", "serve", str(run), "--port",
                             str(port), *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(log, "w"))
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited:\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("server did not start")


def write_report(rows: list[dict], meta: dict, out: Path) -> None:
    by = {r["clients"]: r for r in rows}
    lines = [
        "# glyph serve — load test", "",
        f"Command: `{meta['command']}`  ", f"Run: `{meta['run']}` (base {meta['base']}); server: "
        f"`glyph serve {' '.join(meta['server_args'])}`; {meta['machine']}; "
        f"load average (1, 5, 15 min) before {meta['load']}, after {meta['load_after']} — "
        "the machine is shared, so absolute numbers move with other jobs.", "",
        f"Each client sends {meta['requests']} streamed `/v1/completions` requests one after "
        f"another (max_tokens {meta['max_tokens']}, temperature 0.8, a seed each), cycling "
        "through a glyph with a scene header, a glyph in text, two triggers together and plain "
        "text, so every batch mixes adapters and lanes. tokens/s = generated tokens (from the "
        "usage chunk) / wall time of the level. Loopback only; every request has a "
        f"{meta['timeout']:.0f} s timeout (a request past it counts as hung).", "",
        "| clients | requests | ok | 429 | errors | lost/hung | tokens | tokens/s | latency p50 / p99 (s)"
        " | first token p50 / p99 (s) | server RSS before → after (peak), MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['clients']} | {r['requests']} | {r['ok']} | {r['refused']} | "
                     f"{r['error']} | {r['lost'] + r['hung']} | {r['tokens']} | "
                     f"**{r['tokens_per_s']}** | {r['latency_p50']} / {r['latency_p99']} | "
                     f"{r['ttft_p50']} / {r['ttft_p99']} | {r['rss_before']:.0f} → "
                     f"{r['rss_after']:.0f} ({r['rss_peak']:.0f}) |")
    o = meta.get("overload")
    if o:
        lines += ["", f"Overload: the largest level once more against a server with "
                  f"`{o['server_args']}` (fewer rows per step, a short queue): {o['ok']} answered, "
                  f"**{o['refused']} refused with 429** + Retry-After, {o['error']} errors, "
                  f"{o['lost'] + o['hung']} lost or hung; {o['tokens_per_s']} tokens/s; RSS "
                  f"{o['rss_before']:.0f} → {o['rss_after']:.0f} MB (peak {o['rss_peak']:.0f})."]
    lines += ["", "## Targets", ""]
    if 1 in by and 16 in by:
        x = by[16]["tokens_per_s"] / max(by[1]["tokens_per_s"], 1e-9)
        lines.append(f"- 16 concurrent clients vs one: **{x:.1f}×** the tokens/s (target ≥ 4×): "
                     f"{'met' if x >= 4 else 'NOT met'}.")
    if 64 in by:
        r = by[64]
        answered = r["ok"] + r["refused"] == r["requests"]
        lines.append(f"- 64 clients × {meta['requests']} requests: {r['ok']} answered, "
                     f"{r['refused']} refused with 429 + Retry-After, {r['error']} errors, "
                     f"{r['lost'] + r['hung']} lost or hung: "
                     f"{'met' if answered and not r['error'] else 'NOT met'}"
                     + (f"; under overload {o['ok']} answered + {o['refused']} refused of "
                        f"{o['requests']}, {o['lost'] + o['hung']} lost or hung" if o else "")
                     + ".")
        first = rows[0]["rss_after"]
        lines.append(f"- server memory: {first:.0f} MB after the first level, "
                     f"{rows[-1]['rss_after']:.0f} MB after the last, peak "
                     f"{max(x['rss_peak'] for x in rows):.0f} MB.")
    lines += ["", "## Notes", "",
              "- `--threads 1`: on this shared 2-core machine (other jobs keep the load average at "
              "3–8), torch's default of two threads made every decoding step several times slower "
              "(an OpenMP thread waits for its descheduled sibling at each of the hundreds of small "
              "operations in a step); one thread is faster here. `glyph serve` leaves torch's "
              "setting alone unless `--threads` is given.",
              "- Where a step's time goes (the engine alone, `python -m cProfile`): a 1-row step of "
              "the embedded default costs ~14 ms, mostly fixed per-pass work (peft's per-forward "
              "hooks, Python in the layers); a 16-row step ~23 ms. Batching amortises the fixed "
              "part; HTTP, server-sent events and the load-test client itself share the same two "
              "cores, so the end-to-end gain is smaller than the engine's.",
              "- Memory grows with the batch (the logits of a step are rows × 151,936 floats: 39 MB "
              "at 64 rows) and then stays: the second round of the largest level ends where the "
              "first did.",
              "- The overload server decodes at most 16 rows per step: past ~16 rows a step of "
              "this tiny model costs about as much per row as it saves, so its tokens/s can exceed "
              "the 64-row server's."]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2),
                                        encoding="utf-8")


def sweep(run: Path, server_args: list[str], levels: list[int], a) -> tuple:
    """Start a server, run the levels against it, stop it: ``(rows, model card, health)``."""
    port = free_port()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-serve-{port}.log"
    proc = start_server(run, port, server_args, log)
    base = f"http://127.0.0.1:{port}"
    try:
        models = httpx.get(base + "/v1/models").json()["data"][0]
        texts = prompts(httpx.get(base + "/v1/glyphs").json()["data"])
        asyncio.run(level(base, models["id"], texts, 1, 1, 4, a.timeout))  # warm-up
        sampler = Sampler(proc.pid)
        sampler.start()
        rows = []
        for n in levels:
            before = rss_mb(proc.pid)
            sampler.peak = before
            res, wall = asyncio.run(level(base, models["id"], texts, n, a.requests,
                                          a.max_tokens, a.timeout))
            time.sleep(1.0)
            row = summarise(n, a.requests, res, wall, {"rss_before": before,
                                                       "rss_after": rss_mb(proc.pid),
                                                       "rss_peak": sampler.peak})
            rows.append(row)
            print(json.dumps(row), flush=True)
        sampler.running = False
        health = httpx.get(base + "/health").json()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
    return rows, models, health


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=None, help="default: the embedded default run")
    ap.add_argument("--clients", default="1,4,16,64,64",
                    help="levels; the largest twice shows whether memory stays flat")
    ap.add_argument("--requests", type=int, default=4, help="requests per client")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--server-args", default="", help="extra `glyph serve` options")
    ap.add_argument("--overload", default="--max-batch 16 --max-queue 8",
                    help="a second server with these limits gets the largest level once more, "
                         "to show 429s under overload ('' skips it)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "serve.md")
    a = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from glyph import paths

    run = a.run or paths.default_run()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    levels = [int(x) for x in a.clients.split(",")]
    rows, models, health = sweep(run, a.server_args.split(), levels, a)
    overload = None
    if a.overload:
        orows, _, _ = sweep(run, a.overload.split(), [max(levels)], a)
        overload = {**orows[0], "server_args": a.overload}
    import shlex

    meta = {"command": "python tools/bench_serve.py " + shlex.join(sys.argv[1:]),
            "run": str(run), "base": models["glyph"]["base"], "server_args": a.server_args.split(),
            "overload": overload,
            "requests": a.requests, "max_tokens": a.max_tokens, "timeout": a.timeout,
            "machine": f"{os.cpu_count()} CPU cores, Python {platform.python_version()}",
            "load": load, "engine": health}
    meta["load_after"] = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    write_report(rows, meta, a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
