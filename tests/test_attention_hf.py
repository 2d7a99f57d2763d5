"""The Hugging Face patch on a tiny randomly initialised BERT (nothing downloaded)."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("transformers.masking_utils")

from charact.attention.hf import patch_hf_model  # noqa: E402
from charact.attention.pipeline import AttentionConfig  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture()
def bert_and_batch():
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64, attn_implementation="eager",
    )
    model = transformers.BertModel(cfg).eval()
    ids = torch.randint(0, 100, (3, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[1, 8:] = 0
    mask[2, 5:] = 0
    return model, ids, mask


def test_patched_bert_equals_eager_with_everything_off(bert_and_batch):
    model, ids, mask = bert_and_batch
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).last_hidden_state
        patched = copy.deepcopy(model)
        name = patch_hf_model(patched, AttentionConfig())
        assert patched.config._attn_implementation == name
        out = patched(input_ids=ids, attention_mask=mask).last_hidden_state
    keep = mask.bool()
    assert torch.allclose(out[keep], ref[keep], atol=1e-5)
    # the scale is applied in the attention function: weights and scaling untouched
    attn = patched.encoder.layer[0].attention.self
    assert attn.scaling == 8 ** -0.5
    assert torch.equal(attn.query.weight, model.encoder.layer[0].attention.self.query.weight)


def test_patched_bert_hardware_padding_is_exact(bert_and_batch):
    model, ids, mask = bert_and_batch
    patched = copy.deepcopy(model)
    patch_hf_model(patched, AttentionConfig.hardware(k=3))
    with torch.no_grad():
        batch = patched(input_ids=ids, attention_mask=mask).last_hidden_state
        ref = model(input_ids=ids, attention_mask=mask).last_hidden_state
        for i in range(3):
            n = int(mask[i].sum())
            alone = patched(input_ids=ids[i : i + 1, :n]).last_hidden_state
            assert torch.allclose(batch[i, :n], alone[0], atol=1e-5)
    # top-3 of 12 with quantization is not the float model
    assert not torch.allclose(batch[0], ref[0], atol=1e-3)


def test_padding_keys_never_selected_by_top_k(bert_and_batch):
    model, ids, mask = bert_and_batch
    patch_hf_model(model, AttentionConfig.hardware(k=3))
    with torch.no_grad():
        probs = model(input_ids=ids, attention_mask=mask, output_attentions=True).attentions
    for layer in probs:
        for i in range(3):
            n = int(mask[i].sum())
            # valid queries put no weight on padded keys and at most k = 3 keys carry
            # weight (a kept key's quantized A may round to 0)
            assert float(layer[i, :, :n, n:].abs().sum()) == 0.0
            kept = (layer[i, :, :n, :n] > 0).sum(-1)
            assert bool(kept.le(3).all()) and bool(kept.ge(1).all())
