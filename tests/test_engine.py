"""The continuous-batching engine and its sampler, in process on the tiny trained project."""
from __future__ import annotations

import time

import pytest

torch = pytest.importorskip("torch")

from glyph.errors import ConfigError  # noqa: E402
from glyph.serving.engine import Busy, Engine, EngineConfig  # noqa: E402
from glyph.serving.routing import clean  # noqa: E402
from glyph.serving.sampling import SamplingParams, _nucleus, choose, generator  # noqa: E402
from glyph.serving.service import GlyphService  # noqa: E402
from glyph.vocab import registry  # noqa: E402

PROMPTS = ["⟁\n⟨poetry · micro · en⟩\n", "plain words and", "🫁\n⟨logic · micro · en⟩\n",
           "🜂 ember", "⟁ and 🫁 together", "breath lungs", "🫁 and 🜂 at dawn"]


@pytest.fixture(scope="module")
def gm(trained_project):
    return GlyphService.load(trained_project.run,
                             registry=registry.load(trained_project.registry)).model


@pytest.fixture
def engine(gm):
    eng = Engine(gm, EngineConfig(max_batch=8)).start()
    yield eng
    eng.stop(drain=False, timeout=30)


def greedy(n: int = 10, **kw) -> SamplingParams:
    return SamplingParams(max_tokens=n, temperature=0, repetition_penalty=1.1, **kw)


def test_batched_equals_one_at_a_time_and_hf_generate(gm, engine):
    """Mixed adapters and multi-trigger lanes in one engine give, token for token, what each
    prompt gives alone — and what transformers' generate gives through GlyphModel."""
    alone = [engine.submit(p, greedy()).wait(60) for p in PROMPTS]
    together = [h.wait(60) for h in engine.submit_many(PROMPTS, [greedy()] * len(PROMPTS))]
    assert [h.out_ids for h in together] == [h.out_ids for h in alone]
    assert engine.stats()["max_rows_in_step"] >= 4  # really batched (4 single-route rows)
    assert [h.route for h in together][3:5] == [["initiation"], ["initiation", "body"]]
    hf = [gm.generate([p], temperature=0, max_new_tokens=10)[0].text for p in PROMPTS]
    assert [clean(h.text) for h in alone] == hf
    assert engine.stats()["lanes"] == 0 and "body+initiation" in gm.model.peft_config


def test_summed_adapter_equals_model_wide_activation(gm):
    """Multi-trigger rows in the mixed lane (a summed adapter) or in their own lane (adapters
    active model-wide) give the same tokens, at temperature 0 and with a seed."""
    outs = []
    for combine in (True, False):
        eng = Engine(gm, EngineConfig(combine_adapters=combine)).start()
        params = [greedy(12), SamplingParams(max_tokens=12, temperature=0.9, seed=3)] * 2
        hs = eng.submit_many([PROMPTS[4], PROMPTS[4], PROMPTS[6], PROMPTS[1]], params)
        outs.append([h.wait(60).out_ids for h in hs])
        eng.stop(timeout=30)
    assert outs[0] == outs[1]


def test_requests_join_and_leave_between_steps(engine):
    want = [engine.submit(p, greedy(n)).wait(60).out_ids
            for p, n in ((PROMPTS[0], 30), (PROMPTS[3], 4), (PROMPTS[1], 12))]
    assert [len(w) for w in want] == [30, 4, 12]
    long = engine.submit(PROMPTS[0], greedy(30))
    while long.completion_tokens < 5:  # the long one is decoding ...
        time.sleep(0.005)
    short = engine.submit(PROMPTS[3], greedy(4))   # ... when these join its batch
    mid = engine.submit(PROMPTS[1], greedy(12))
    short.wait(60)
    assert not long._done.is_set()  # the short one left while the long one goes on
    assert [h.wait(60).out_ids for h in (long, short, mid)] == want
    assert long.finish_reason == "length"


def test_seed_reproduces_whatever_shares_the_batch(engine):
    p = SamplingParams(max_tokens=12, temperature=0.9, top_p=0.95, seed=7)
    a = engine.submit(PROMPTS[1], p).wait(60).out_ids
    crowd = engine.submit_many([PROMPTS[0], PROMPTS[1], PROMPTS[3]],
                               [greedy(), p, SamplingParams(max_tokens=5, seed=1)])
    assert crowd[1].wait(60).out_ids == a
    other = engine.submit(PROMPTS[1], SamplingParams(max_tokens=12, temperature=0.9,
                                                     top_p=0.95, seed=8)).wait(60)
    assert other.out_ids != a


def test_streaming_stop_strings_and_cancel(engine):
    full = engine.submit(PROMPTS[1], greedy(20)).wait(60).text
    stop = full[len(full) // 2: len(full) // 2 + 2]
    h = engine.submit(PROMPTS[1], greedy(20, stop=(stop,)))
    pieces = list(h)
    assert h.finish_reason == "stop" and "".join(pieces) == h.text == full[:full.find(stop)]
    long = engine.submit(PROMPTS[0], greedy(200))
    for _ in long:
        break
    long.cancel()
    assert long.wait(30).finish_reason == "cancelled" and long.completion_tokens < 200
    assert engine.stats()["active"] == 0


def test_limits_refuse_clearly(gm):
    eng = Engine(gm, EngineConfig(max_queue=2, max_prompt_tokens=8, max_tokens=50))  # not started
    eng.submit("one", greedy())
    with pytest.raises(Busy, match="max-queue 2"):
        eng.submit_many(["two", "three"], [greedy(), greedy()])
    assert eng.stats()["waiting"] == 1  # all or nothing
    with pytest.raises(ConfigError, match="at most 8"):
        eng.submit("many words " * 10, greedy())
    with pytest.raises(ConfigError, match="cap of 50"):
        eng.submit("x", greedy(51))
    with pytest.raises(ConfigError, match="top_p"):
        SamplingParams(top_p=0)
    eng.stop(drain=False)


# ---------------------------------------------------------------- the sampler alone
def test_nucleus_is_transformers_top_p():
    from transformers.generation.logits_process import TopPLogitsWarper

    g = torch.Generator().manual_seed(0)
    for scale, top_p in ((1.0, 0.9), (4.0, 0.5), (0.05, 0.95)):  # peaked … nearly flat
        logits = torch.randn(1, 5000, generator=g) * scale
        hf = TopPLogitsWarper(top_p)(None, logits.clone())[0]
        pos, _ = _nucleus(torch.softmax(logits[0], 0), top_p)
        assert set(pos.tolist()) == set(torch.isfinite(hf).nonzero()[:, 0].tolist())


def test_sampling_follows_its_own_generator_and_penalties():
    logits = torch.tensor([[0.0, 3.0, 2.9, -1.0]])
    p = SamplingParams(temperature=1.0, seed=3)
    draws = [int(choose(logits, [p], [[]], [[]], [generator(3)])) for _ in range(3)]
    assert len(set(draws)) == 1  # same seed, same draw
    assert int(choose(logits, [greedy()], [[1]], [[]], [None])) == 2  # 3.0/1.1 < 2.9
    pres = SamplingParams(temperature=0, presence_penalty=1.0)
    assert int(choose(logits, [pres], [[]], [[1]], [None])) == 2


def test_batched_plain_sampling_equals_one_row_at_a_time():
    from glyph.serving.sampling import _sample

    logits = torch.randn(5, 3000, generator=torch.Generator().manual_seed(1)) * 3
    params = [SamplingParams(temperature=t, seed=i) for i, t in enumerate((0.5, 1, 1.5, 0.8, 2))]
    batched = choose(logits, params, [[]] * 5, [[]] * 5, [generator(i) for i in range(5)])
    alone = [_sample(logits[i].clone(), params[i], generator(i)) for i in range(5)]
    assert batched.tolist() == alone


def test_blockwise_draw_is_the_inverse_cdf():
    from glyph.serving.sampling import _draw

    g = torch.Generator().manual_seed(2)
    probs = torch.softmax(torch.randn(3, 5000, generator=g) * 4, -1)
    u = torch.rand(3, generator=g, dtype=torch.float64)
    want = [int(torch.searchsorted(probs[r].double().cumsum(0), u[r] * probs[r].double().sum(),
                                   right=True)) for r in range(3)]
    assert _draw(probs, u).tolist() == want
    assert _draw(torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([0.0])).tolist() == [2]


def test_compact_head_gives_the_dense_logits():
    from glyph.serving import compact_head

    lin = torch.nn.Linear(8, 50, bias=False)
    with torch.no_grad():
        lin.weight[10:] = 0
    model = torch.nn.Module()
    model.get_output_embeddings = lambda: lin
    x = torch.randn(3, 2, 8)
    with torch.no_grad():
        want = lin(x)
        assert compact_head.install(model) == 10
        got = lin(x)
    assert torch.allclose(got, want, atol=1e-6) and torch.equal(got[..., 10:], want[..., 10:])
    assert compact_head.install(model) == 10  # idempotent
