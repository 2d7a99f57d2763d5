"""The Hugging Face patch across model families, on tiny random models built from configs
(nothing downloaded): exact with every effect off (or refused), unpatch and save_pretrained
give the original model back, training runs the same hardware, static calibration."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
T = pytest.importorskip("transformers")
pytest.importorskip("transformers.masking_utils")

from charact.attention import hf  # noqa: E402
from charact.attention.hf import (  # noqa: E402
    IMPLEMENTATION,
    calibrate_hf_model,
    clear_hf_calibration,
    hf_calibration,
    patch_hf_model,
    topkima_hf_attention,
    unpatch_hf_model,
)
from charact.attention.pipeline import AttentionConfig  # noqa: E402
from charact.attention.protocols import CodeErrorModel  # noqa: E402
from charact.errors import UserError  # noqa: E402

pytestmark = pytest.mark.torch

V = 100  # vocabulary
EAGER = {"attn_implementation": "eager"}
DEC = {"vocab_size": V, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
       "num_attention_heads": 4, "max_position_embeddings": 64, **EAGER}
ENC = {**DEC, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}


def _gemma2(softcap: float | None = 50.0):
    return T.Gemma2ForCausalLM(T.Gemma2Config(
        **DEC, num_key_value_heads=2, head_dim=8, sliding_window=4,
        attn_logit_softcapping=softcap))


BUILDERS = {
    "bert": lambda: T.BertModel(T.BertConfig(**ENC)),
    "roberta": lambda: T.RobertaModel(T.RobertaConfig(**ENC, pad_token_id=1)),
    "distilbert": lambda: T.DistilBertModel(T.DistilBertConfig(
        vocab_size=V, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
        max_position_embeddings=64, dropout=0.0, attention_dropout=0.0, **EAGER)),
    "gpt2": lambda: T.GPT2LMHeadModel(T.GPT2Config(
        vocab_size=V, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=0,
        eos_token_id=0, attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0, **EAGER)),
    # 4 query heads on 2 / 1 key-value heads: grouped- and multi-query attention
    "llama": lambda: T.LlamaForCausalLM(T.LlamaConfig(**DEC, num_key_value_heads=2)),
    # a 4-token sliding window on 12 tokens
    "mistral": lambda: T.MistralForCausalLM(T.MistralConfig(
        **DEC, num_key_value_heads=1, sliding_window=4)),
    "qwen2": lambda: T.Qwen2ForCausalLM(T.Qwen2Config(
        **DEC, num_key_value_heads=2, use_sliding_window=True, sliding_window=4,
        max_window_layers=1)),
    # relative position bias, encoder-decoder with cross-attention
    "t5": lambda: T.T5Model(T.T5Config(
        vocab_size=V, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
        num_heads=4, dropout_rate=0.0, **EAGER)),
    "gemma2": _gemma2,  # logit soft-capping 50 (the default): refused
    "gemma2-nocap": lambda: _gemma2(None),
    "vit": lambda: T.ViTModel(T.ViTConfig(
        image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=64, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, **EAGER)),
}
CAUSAL = ("gpt2", "llama", "mistral", "qwen2", "gemma2-nocap")
REFUSED = {"gemma2": "soft-capping"}


def _ids(b: int, n: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(3, V, (b, n), generator=torch.Generator().manual_seed(seed))


def _padding(left: bool = False) -> torch.Tensor:
    mask = torch.ones(3, 12, dtype=torch.long)
    if left:  # decoder-only models pad on the left for generation
        mask[1, :4], mask[2, :7] = 0, 0
    else:
        mask[1, 8:], mask[2, 5:] = 0, 0
    return mask


def _inputs(family: str, padded: bool = True) -> dict:
    if family == "vit":
        return {"pixel_values": torch.randn(2, 3, 16, 16,
                                            generator=torch.Generator().manual_seed(2))}
    d = {"input_ids": _ids(3, 12)}
    if padded:
        d["attention_mask"] = _padding(left=family in CAUSAL)
    if family == "t5":
        d["decoder_input_ids"] = _ids(3, 7, seed=3)
    return d


def _out(model, inputs: dict) -> torch.Tensor:
    o = model(**inputs)
    return o.logits if hasattr(o, "logits") else o.last_hidden_state


_cache: dict[str, torch.nn.Module] = {}


def _model(family: str) -> torch.nn.Module:
    """A fresh copy of the family's tiny model (built once, fixed seed)."""
    if family not in _cache:
        torch.manual_seed(0)
        _cache[family] = BUILDERS[family]().eval()
    return copy.deepcopy(_cache[family])


@pytest.mark.parametrize("family", list(BUILDERS))
def test_effects_off_equals_unpatched_or_refused(family):
    model = _model(family)
    if family in REFUSED:
        with pytest.raises(UserError, match=REFUSED[family]) as err:
            patch_hf_model(model, AttentionConfig())
        assert "\n" not in str(err.value) and "gemma2" in str(err.value)
        # nothing was switched
        assert model.config._attn_implementation == "eager"
        return
    cases = [_inputs(family)]
    if family != "vit":
        # no mask at all: causal models must stay causal (no is_causal shortcut)
        cases.append(_inputs(family, padded=False))
    with torch.no_grad():
        refs = [_out(model, c) for c in cases]
        assert patch_hf_model(model, AttentionConfig()) == IMPLEMENTATION
        for c, ref in zip(cases, refs, strict=True):
            out = _out(model, c)
            assert float((out - ref).abs().max()) < 1e-5


@pytest.mark.parametrize("family", [f for f in BUILDERS if f not in REFUSED])
def test_effects_on_run_and_differ(family):
    model = _model(family)
    inputs = _inputs(family)
    cfg = AttentionConfig.hardware(k=2, av_codes=16)
    with torch.no_grad():
        ref = _out(model, inputs)
        patch_hf_model(model, cfg, qk_error=ShiftError(32), av_error=ShiftError(16),
                       generator=torch.Generator().manual_seed(0))
        out = _out(model, inputs)
    assert bool(torch.isfinite(out).all())
    assert float((out - ref).abs().max()) > 1e-3


def test_sliding_window_and_position_bias_matter():
    """The models above exercise the window and the bias: without them eager differs."""
    ids = _ids(1, 12)
    with torch.no_grad():
        mistral = _model("mistral")
        wide = copy.deepcopy(mistral)
        wide.config.sliding_window = 64
        assert float((mistral(ids).logits - wide(ids).logits).abs().max()) > 1e-4
        t5 = _model("t5")
        bias = t5.encoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight
        assert float(bias.abs().max()) > 0.1


@pytest.mark.parametrize("family", ["gpt2", "llama", "bert"])
def test_padding_and_future_keys_never_selected(family):
    model = _model(family)
    inputs = _inputs(family)
    mask = inputs["attention_mask"].bool()
    patch_hf_model(model, AttentionConfig.hardware(k=3))
    with torch.no_grad():
        probs = model(**inputs, output_attentions=True).attentions
    valid = mask[:, None, :, None] & mask[:, None, None, :]  # (B, 1, Lq, Lk)
    for layer in probs:
        rows = mask[:, None, :, None].expand_as(layer)
        # a valid query gives no weight to a padded key
        assert float(layer[rows & ~valid.expand_as(layer)].abs().sum()) == 0.0
        if family != "bert":  # nor to a future key
            assert float((torch.triu(layer, diagonal=1) * rows).abs().sum()) == 0.0
        assert bool(((layer > 0) & rows).sum(-1).le(3).all())


def test_generation_with_cache_matches_unpatched():
    model = _model("llama")
    ids, mask = _ids(2, 8), torch.ones(2, 8, dtype=torch.long)
    mask[1, :3] = 0
    kw = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0}
    ref = model.generate(input_ids=ids, attention_mask=mask, **kw)
    patch_hf_model(model, AttentionConfig())
    assert torch.equal(model.generate(input_ids=ids, attention_mask=mask, **kw), ref)


class ShiftError:
    """A code-error model (the CodeErrorModel protocol): each code moves by -1, 0 or +1."""

    def __init__(self, n_codes: int) -> None:
        self.n_codes = n_codes

    def sample_levels_(self, levels, generator=None, /):
        step = torch.randint(-1, 2, levels.shape, generator=generator).to(levels.dtype)
        return levels.add_(step).clamp_(0, self.n_codes - 1)


class ChipErrors:
    """A structured error model: one static error per physical array, bound per chip."""

    n_codes = 32

    def for_chip(self, chip: int, layer: int = 0, site: str = "qk"):
        bound = ShiftError(self.n_codes)
        bound.where = (chip, layer, site)
        return bound

    def sample_levels_(self, levels, generator=None, /):
        raise AssertionError("unbound structured model sampled")


def test_chip_binds_each_attention_module_to_its_own_array():
    model = _model("t5")  # encoder self-, decoder self- and cross-attention
    patch_hf_model(model, AttentionConfig.hardware(k=2), qk_error=ChipErrors(),
                   av_error=ChipErrors(), chip=3)
    states = [m._charact_topkima for m in model.modules() if hasattr(m, "_charact_topkima")]
    assert len(states) == 6
    assert [s.config.error_model.where for s in states] == [(3, i, "qk") for i in range(6)]
    assert [s.config.av_error.where for s in states] == [(3, i, "av") for i in range(6)]
    with torch.no_grad():
        assert bool(torch.isfinite(_out(model, _inputs("t5"))).all())


def test_error_parameters_follow_the_protocol():
    assert isinstance(ShiftError(32), CodeErrorModel)
    model = _model("bert")
    with pytest.raises(UserError, match="sample_levels_"):
        patch_hf_model(model, AttentionConfig.hardware(), qk_error=object())
    with pytest.raises(UserError, match="32"):  # the config checks the code count
        patch_hf_model(model, AttentionConfig.hardware(), qk_error=ShiftError(16))


@pytest.mark.parametrize("family", ["bert", "llama", "t5"])
def test_unpatch_restores_exactly(family):
    model = _model(family)
    inputs = _inputs(family)
    impls = {n: m.config._attn_implementation for n, m in model.named_modules()
             if hasattr(m, "config")}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        ref = _out(model, inputs)
        patch_hf_model(model, AttentionConfig.hardware(k=2))
        calibrate_hf_model(model, [inputs])
        assert not torch.equal(_out(model, inputs), ref)
        unpatch_hf_model(model)
        out = _out(model, inputs)
    assert torch.equal(out, ref)  # bit for bit
    assert impls == {n: m.config._attn_implementation for n, m in model.named_modules()
                     if hasattr(m, "config")}
    after = model.state_dict()
    assert after.keys() == state.keys()
    assert all(torch.equal(after[k], v) for k, v in state.items())
    assert not any(hasattr(m, "_charact_topkima") for m in model.modules())
    with pytest.raises(UserError, match="not patched"):
        unpatch_hf_model(model)


@pytest.mark.parametrize("family", ["bert", "gpt2", "t5"])
def test_save_pretrained_of_patched_model_is_the_original(family, tmp_path):
    model = _model(family)
    original = copy.deepcopy(model)
    inputs = _inputs(family)
    patch_hf_model(model, AttentionConfig.hardware(k=2))
    calibrate_hf_model(model, [inputs])
    model.save_pretrained(tmp_path)
    reloaded = type(model).from_pretrained(tmp_path, attn_implementation="eager").eval()
    want, got = original.state_dict(), reloaded.state_dict()
    assert want.keys() == got.keys()
    assert all(torch.equal(got[k], v) for k, v in want.items())
    with torch.no_grad():
        assert torch.equal(_out(reloaded, inputs), _out(original, inputs))
    # patching adds nothing to the state dict either
    assert model.state_dict().keys() == want.keys()


def test_training_runs_the_same_hardware_with_gradients():
    model = _model("llama")
    inputs = _inputs("llama")
    gen = torch.Generator()
    cfg = AttentionConfig.hardware(k=3, av_codes=16)
    patch_hf_model(model, cfg, gen, qk_error=ShiftError(32), av_error=ShiftError(16))

    def run(train: bool):
        model.train(train)
        gen.manual_seed(7)
        return _out(model, inputs)

    train_out = run(True)
    with torch.no_grad():
        eval_out = run(False)
    assert torch.equal(train_out.detach(), eval_out)  # same A.V ADC and errors
    # and the A.V ADC (with its error) does act in training
    plain = _model("llama")
    patch_hf_model(plain, cfg.with_(av_codes=None), gen, qk_error=ShiftError(32))
    plain.train()
    gen.manual_seed(7)
    assert not torch.equal(_out(plain, inputs).detach(), eval_out)
    train_out.float().pow(2).mean().backward()
    grad = model.model.layers[0].self_attn.q_proj.weight.grad
    assert grad is not None and bool(torch.isfinite(grad).all()) and float(grad.abs().sum()) > 0


def test_attention_dropout_in_training_is_refused_or_explicitly_ignored():
    torch.manual_seed(0)
    cfg = dict(ENC, attention_probs_dropout_prob=0.1)
    model = T.BertModel(T.BertConfig(**cfg))
    ids = _ids(2, 8)
    patch_hf_model(model, AttentionConfig.hardware(k=2))
    model.eval()
    model(ids)  # evaluation passes no dropout
    model.train()
    with pytest.raises(UserError, match=r"attention dropout \(p=0.1\)"):
        model(ids)
    unpatch_hf_model(model)
    patch_hf_model(model, AttentionConfig.hardware(k=2), ignore_attention_dropout=True)
    assert bool(torch.isfinite(model(ids).last_hidden_state).all())


def test_unmodelled_keywords_are_refused():
    model = _model("llama")
    patch_hf_model(model, AttentionConfig())
    attn = model.model.layers[0].self_attn
    q = torch.randn(1, 4, 5, 8)
    kv = torch.randn(1, 2, 5, 8)
    out, probs = topkima_hf_attention(attn, q, kv, kv, None, scaling=1.0, sliding_window=None)
    assert out.shape == (1, 5, 4, 8)
    # no mask and a causal module: still causal
    assert float(torch.triu(probs, diagonal=1).abs().sum()) == 0.0
    for kw in ({"softcap": 30.0}, {"s_aux": torch.zeros(4)}, {"head_mask": torch.ones(4)}):
        with pytest.raises(UserError, match=next(iter(kw))):
            topkima_hf_attention(attn, q, kv, kv, None, **kw)
    with pytest.raises(UserError, match="not patched"):
        topkima_hf_attention(torch.nn.Linear(2, 2), q, kv, kv, None)


def test_patch_twice_is_refused_and_deepcopy_works():
    model = _model("bert")
    patch_hf_model(model, AttentionConfig.hardware(k=2))
    with pytest.raises(UserError, match="already patched"):
        patch_hf_model(model, AttentionConfig())
    twin = copy.deepcopy(model)
    inputs = _inputs("bert")
    with torch.no_grad():
        assert torch.equal(_out(twin, inputs), _out(model, inputs))
    unpatch_hf_model(twin)
    assert hasattr(model, "_charact_patch")  # the original stays patched


def test_calibration_fixes_the_window_per_layer_and_head(monkeypatch):
    model = _model("bert")
    cfg = AttentionConfig.hardware(k=3, av_codes=32)
    patch_hf_model(model, cfg)
    batches = [{"input_ids": _ids(4, 12, seed=s)} for s in (10, 11, 12)]
    ids, mask = _ids(3, 12), _padding()
    with torch.no_grad():
        per_sample = model(input_ids=ids, attention_mask=mask).last_hidden_state
    model.train()
    assert calibrate_hf_model(model, batches, n_batches=2) == 2
    assert model.training  # mode restored
    model.eval()
    cal = hf_calibration(model)
    assert len(cal) == 2
    for stats in cal.values():
        assert stats["qk_hi"].shape == (4, 1, 1) and bool((stats["qk_hi"] > stats["qk_lo"]).all())

    seen = []
    real = hf.topkima_attention

    def spy(*args, **kwargs):
        seen.append(kwargs["calib"])
        return real(*args, **kwargs)

    monkeypatch.setattr(hf, "topkima_attention", spy)
    with torch.no_grad():
        batch = model(input_ids=ids, attention_mask=mask).last_hidden_state
        other = torch.cat([ids[:1], _ids(2, 12, seed=5)])  # other companions
        with_others = model(input_ids=other).last_hidden_state
        for i in range(3):
            n = int(mask[i].sum())
            alone = model(input_ids=ids[i : i + 1, :n]).last_hidden_state
            # one sample's output does not depend on the rest of the batch
            assert torch.allclose(batch[i, :n], alone[0], atol=1e-5)
        assert torch.allclose(with_others[0], batch[0], atol=1e-5)
    # every call used the same static window, whatever the input
    assert seen and all(c is not None for c in seen)
    for layer in (seen[0::2], seen[1::2]):  # the two layers alternate
        assert all(torch.equal(c.qk_hi, layer[0].qk_hi) and torch.equal(c.qk_lo, layer[0].qk_lo)
                   for c in layer)
    assert not torch.equal(seen[0].qk_hi, seen[1].qk_hi)  # per layer
    # the static window is not the per-sample one
    assert not torch.allclose(batch, per_sample, atol=1e-4)
    monkeypatch.undo()
    clear_hf_calibration(model)
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids, attention_mask=mask).last_hidden_state,
                           per_sample)
    with pytest.raises(UserError, match="no batch"):
        calibrate_hf_model(model, [])


def test_too_old_transformers_is_refused(monkeypatch):
    monkeypatch.setattr(hf, "MIN_TRANSFORMERS", "99.0")
    with pytest.raises(UserError, match=r"transformers >= 99.0"):
        patch_hf_model(_model("bert"), AttentionConfig())
