"""`glyph serve` as a real server process on a loopback port, driven by the official `openai`
client, raw HTTP and headless Chromium; plus the app in process for auth and body limits."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``glyph serve RUN`` in a subprocess on a free loopback port."""

    def __init__(self, project, *args: str, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, GLYPH_REGISTRY=str(project.registry),
                   GLYPH_SCENES=str(project.scenes), PYTHONUNBUFFERED="1")
        env.pop("GLYPH_API_KEY", None)
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "glyph.cli", "serve", str(project.run), "--port",
             str(self.port), "--model-name", "mini", *args],
            env=env, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
        deadline = time.time() + 240
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"server did not come up: {log.read_text()}")

    def health(self) -> dict:
        return httpx.get(self.url + "/health", timeout=10).json()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="module")
def server(trained_project, tmp_path_factory):
    srv = Server(trained_project, "--max-batch", "8", "--max-queue", "8",
                 "--max-prompt-tokens", "64", "--max-tokens", "400", "--max-body-kb", "4",
                 log=tmp_path_factory.mktemp("serve") / "server.log")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0,
                         timeout=120)


def post(server, path: str, body: dict, **kw) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=120, **kw)


# ---------------------------------------------------------------- the openai client
def test_models_lists_the_run_its_base_and_triggers(client):
    (m,) = client.models.list().data
    assert m.id == "mini"
    assert m.model_extra["glyph"]["triggers"] == {"body": ["🫁"], "initiation": ["⟁", "🜂"]}


def test_completions_plain_and_streaming_with_glyph_routing(client):
    kw = dict(model="mini", prompt="⟁ stairs heat", max_tokens=8, temperature=0)
    r = client.completions.create(**kw)
    assert r.choices[0].finish_reason in ("length", "stop") and r.choices[0].text
    assert r.usage.prompt_tokens == 3 and r.usage.completion_tokens <= 8
    assert r.model_extra["glyph"] == {"glyphs": ["⟁"], "adapters": ["initiation"]}
    chunks = list(client.completions.create(**kw, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == r.choices[0].text
    plain = client.completions.create(model="mini", prompt="plain words", max_tokens=3)
    assert plain.model_extra["glyph"] == {"glyphs": [], "adapters": []}


def test_chat_plain_and_streaming_with_several_triggers(client):
    kw = dict(model="mini", max_tokens=6, temperature=0, messages=[
        {"role": "system", "content": "You unfold glyphs."},
        {"role": "user", "content": "🫁 and then ⟁"}])
    r = client.chat.completions.create(**kw)
    assert r.choices[0].message.role == "assistant"
    assert r.model_extra["glyph"] == {"glyphs": ["🫁", "⟁"], "adapters": ["body", "initiation"]}
    stream = client.chat.completions.create(**kw, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == r.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == r.usage.completion_tokens


def test_n_choices_seed_and_stop(client):
    kw = dict(model="mini", prompt="🜂 ember", max_tokens=10, temperature=1.0, n=2, seed=5)
    a, b = client.completions.create(**kw), client.completions.create(**kw)
    assert [c.text for c in a.choices] == [c.text for c in b.choices]  # seed reproduces
    assert [c.index for c in a.choices] == [0, 1]
    full = client.completions.create(model="mini", prompt="🜂 ember", max_tokens=10,
                                     temperature=0).choices[0].text
    stop = full[3:5]
    cut = client.completions.create(model="mini", prompt="🜂 ember", max_tokens=10,
                                    temperature=0, stop=[stop]).choices[0]
    assert cut.finish_reason == "stop" and cut.text == full[:full.find(stop)]


def test_concurrent_requests_share_decoding_steps(client, server):
    prompts = ["⟁ stairs", "plain words", "🫁 breath", "🜂 ember", "⟁ and 🫁", "lungs"]
    alone = [client.completions.create(model="mini", prompt=p, max_tokens=12, temperature=0)
             .choices[0].text for p in prompts]
    out: dict[int, str] = {}

    def one(i: int) -> None:
        out[i] = client.completions.create(model="mini", prompt=prompts[i], max_tokens=12,
                                           temperature=0).choices[0].text

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [out[i] for i in range(len(prompts))] == alone
    assert server.health()["max_rows_in_step"] >= 3


# ---------------------------------------------------------------- glyph endpoints
def test_glyph_endpoints_and_expand_matches_the_cli(server, project):
    from click.testing import CliRunner

    from glyph.cli import main

    g = httpx.get(server.url + "/v1/glyphs").json()
    assert [x["symbol"] for x in g["data"]] == ["⟁", "🜂", "🫁"] and "poetry" in g["registers"]
    n = httpx.get(server.url + "/v1/glyphs/breath/neighbors", params={"k": 3,
                                                                      "register": "logic"}).json()
    assert n["glyph"] == "🫁" and len(n["data"]) == 3
    assert all(h["register"] == "logic" for h in n["data"])
    body = {"glyph": "🜂", "register": "logic", "max_tokens": 12, "temperature": 0}
    got = post(server, "/v1/expand", body).json()
    cli = CliRunner().invoke(main, ["expand", "🜂", "--register", "logic", "--max-new-tokens",
                                    "12", "--temperature", "0", "--json"])
    assert got == json.loads(cli.stdout)  # the same protocol, the same output
    with httpx.stream("POST", server.url + "/v1/expand", json={**body, "stream": True},
                      timeout=120) as r:
        events = [json.loads(line[6:]) for line in r.iter_lines()
                  if line.startswith("data: {")]
    assert events[0]["event"] == "start" and events[-1]["event"] == "done"
    assert events[-1]["result"] == got
    assert "".join(e["text"] for e in events if e["event"] == "delta").strip() == got["text"]
    free = post(server, "/v1/expand", {"prompt": "the 🫁 and ⟁ meet", "max_tokens": 4}).json()
    assert free["triggers"] == ["body", "initiation"]


@pytest.mark.parametrize("method,path,body,status,param", [
    ("post", "/v1/completions", {"model": "nope", "prompt": "x"}, 404, "model"),
    ("post", "/v1/completions", {"model": "mini", "prompt": "x", "temperature": "hot"}, 400,
     "temperature"),
    ("post", "/v1/completions", {"model": "mini", "prompt": "x", "top_p": 0}, 400, "prompt"),
    ("post", "/v1/completions", {"model": "mini", "prompt": "x", "max_tokens": 401}, 400,
     "prompt"),
    ("post", "/v1/completions", {"model": "mini", "prompt": "word " * 80}, 400, "prompt"),
    ("post", "/v1/completions", {"model": "mini", "prompt": "x", "logprobs": 2}, 400,
     "logprobs"),
    ("post", "/v1/expand", {"glyph": "☉"}, 400, "glyph"),
    ("post", "/v1/expand", {"glyph": "⟁", "register": "dance"}, 400, "register"),
    ("get", "/v1/glyphs/☉/neighbors", None, 400, "glyph"),
    ("get", "/v1/glyphs/⟁/neighbors?register=dance", None, 400, "register"),
    ("post", "/v1/completions", {"model": "mini", "prompt": "x" * 5000}, 413, None),
])
def test_errors_have_openai_shape(server, method, path, body, status, param):
    r = (post(server, path, body) if method == "post"
         else httpx.get(server.url + path, timeout=30))
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if param:
        assert err["param"] == param


def test_full_queue_is_refused_with_429_and_nothing_is_lost(server):
    """8 decode at once, 8 may wait: of 40 simultaneous requests some get 429 + Retry-After,
    every other one is answered in full."""
    results: list[httpx.Response] = []

    def one() -> None:
        results.append(post(server, "/v1/completions", {"model": "mini", "prompt": "⟁ stairs",
                                                        "max_tokens": 60, "temperature": 0}))

    threads = [threading.Thread(target=one) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in results)
    assert len(results) == 40 and set(codes) == {200, 429}
    refused = [r for r in results if r.status_code == 429]
    assert all(r.headers["retry-after"] == "1" for r in refused)
    assert refused[0].json()["error"]["type"] == "rate_limit_error"
    ok = [r.json() for r in results if r.status_code == 200]
    assert len({o["choices"][0]["text"] for o in ok}) == 1  # all complete, all the same
    assert server.health()["active"] == 0


def test_client_disconnect_stops_its_generation(server):
    before = server.health()
    with httpx.stream("POST", server.url + "/v1/completions", timeout=60, json={
            "model": "mini", "prompt": "plain words", "max_tokens": 400, "stream": True,
            "temperature": 1.0, "seed": 1}) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                break  # one chunk, then hang up
    deadline = time.time() + 30
    while time.time() < deadline and server.health()["active"]:
        time.sleep(0.1)
    after = server.health()
    assert after["active"] == 0 and after["cancelled"] == before["cancelled"] + 1
    assert after["tokens"] - before["tokens"] < 400


# ---------------------------------------------------------------- in process: auth, limits
@pytest.fixture(scope="module")
def keyed_app(trained_project):
    from fastapi.testclient import TestClient

    from glyph.serving.api import create_app
    from glyph.serving.engine import Engine
    from glyph.serving.httpkit import ServerConfig
    from glyph.serving.service import GlyphService
    from glyph.vocab import registry

    svc = GlyphService.load(trained_project.run,
                            registry=registry.load(trained_project.registry))
    engine = Engine(svc.model).start()
    with TestClient(create_app(svc, engine, ServerConfig(model_name="mini", api_key="s3cret"))) as c:
        yield c


def test_api_key_is_required_when_set(keyed_app):
    body = {"model": "mini", "prompt": "⟁", "max_tokens": 2}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        r = keyed_app.post("/v1/completions", json=body, headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = keyed_app.post("/v1/completions", json=body, headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200 and r.json()["choices"][0]["text"] is not None
    assert keyed_app.get("/").status_code == 200  # the atlas page itself is public


def test_serve_binds_loopback_and_refuses_bad_options(project):
    from click.testing import CliRunner

    from glyph.cli import main

    serve = next(p for p in main.commands["serve"].params if p.name == "host")
    assert serve.default == "127.0.0.1"
    r = CliRunner().invoke(main, ["serve", "--max-batch", "0"])
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "--max-batch" in r.output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        r = CliRunner().invoke(main, ["serve", "--port", str(taken.getsockname()[1])])
    assert r.exit_code == 1 and "pass another --port" in r.output and r.output.count("\n") == 1


# ---------------------------------------------------------------- the atlas in Chromium
def test_atlas_in_headless_chromium(server, tmp_path):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs it with apt-get")
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            outside = []  # everything the page loads must come from this server
            page.on("request", lambda req: outside.append(req.url)
                    if not req.url.startswith(server.url) else None)
            page.goto(server.url + "/")
            page.wait_for_selector("#map circle.scene")
            assert page.locator("#registry tbody tr").count() == 3
            page.hover("#map circle.scene >> nth=0")
            assert "·" in page.locator("#tooltip").inner_text()  # a scene, readable on hover
            page.click("#registry tbody tr[data-symbol='🫁']")
            page.wait_for_selector("#neighbors li[data-scene]")
            assert page.locator("#neighbors li").count() == 5
            page.select_option("#expand-register", "logic")
            page.click("#expand-button")
            page.wait_for_function(
                "document.querySelector('#expansion-text').textContent.length > 0")
            page.wait_for_selector("#expansion-text[data-finished=true]", timeout=60_000)
            assert "adapter body" in page.locator("#expansion-meta").inner_text()
            page.screenshot(path=str(tmp_path / "atlas.png"), full_page=True)
            assert outside == []
        finally:
            browser.close()


# ---------------------------------------------------------------- SIGTERM (its own server)
def test_sigterm_finishes_in_flight_requests_then_exits(trained_project, tmp_path):
    srv = Server(trained_project, log=tmp_path / "server.log")
    got: list = []

    def long() -> None:
        got.append(post(srv, "/v1/completions", {"model": "mini", "prompt": "⟁ stairs",
                                                 "max_tokens": 150, "temperature": 0}))

    t = threading.Thread(target=long)
    t.start()
    deadline = time.time() + 30
    while time.time() < deadline and not srv.health()["active"]:
        time.sleep(0.02)
    srv.proc.send_signal(signal.SIGTERM)
    t.join(120)
    # uvicorn re-raises the signal after its graceful shutdown: the exit status says SIGTERM
    assert srv.proc.wait(60) in (0, -signal.SIGTERM)
    assert got and got[0].status_code == 200, "the in-flight request was not finished"
    choice = got[0].json()["choices"][0]
    assert choice["finish_reason"] in ("length", "stop") and choice["text"]
    assert got[0].json()["usage"]["completion_tokens"] >= 1
    assert "Traceback" not in srv.log.read_text()
