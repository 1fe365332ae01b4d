"""The fusion-head contract, checked for every registered head (a new head is tested automatically)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import vemo.fusion
from vemo.errors import ConfigError
from vemo.registry import UnknownNameError

D = 32
LENGTHS = {"audio": 5, "frames": 7, "text": 1}
HEADS = vemo.fusion.names()
# non-default variants worth covering too: (name, options)
VARIANTS = [(name, {}) for name in HEADS] + [
    ("crossattn", {"positional": "learned", "max_positions": 16}),
    ("crossattn", {"pool_depth": 2}),
    ("pairwise", {"vector_modalities": []}),             # three sequences of different lengths: six pairs
    ("joint", {"depth": 1, "activation": "relu", "max_positions": 16}),
]


def _ids(variant):
    name, options = variant
    return name + "".join(f"-{k}={v}" for k, v in options.items() if k != "max_positions" or len(options) == 1)


def build(name, options, modalities=tuple(LENGTHS), seed=0):
    torch.manual_seed(seed)
    head = vemo.fusion.create(name, modalities=list(modalities), d_model=D, **options)
    return head.eval()


def make_batch(modalities=tuple(LENGTHS), batch=4, seed=0):
    """Random tokens with ragged masks. Sample 1 lacks audio, sample 2 lacks frames and text,
    sample 3 has only frames (it lacks every modality but one)."""
    g = torch.Generator().manual_seed(seed)
    tokens, masks = {}, {}
    for m in modalities:
        t = LENGTHS[m]
        tokens[m] = torch.randn(batch, t, D, generator=g)
        lengths = torch.randint(1, t + 1, (batch,), generator=g)
        masks[m] = torch.arange(t)[None, :] < lengths[:, None]
    drop = {"audio": [1, 3], "frames": [2], "text": [2, 3]}
    for m in modalities:
        if len(modalities) > 1:
            masks[m][drop[m]] = False
    return tokens, masks


def with_garbage(tokens, masks, seed=1):
    """Padded positions and wholly missing modalities filled with huge values and NaN."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for m, x in tokens.items():
        junk = torch.randn(x.shape, generator=g) * 1e4
        junk[..., ::3] = float("nan")
        out[m] = torch.where(masks[m].unsqueeze(-1), x, junk)
    return out


@pytest.fixture(params=VARIANTS, ids=[_ids(v) for v in VARIANTS])
def variant(request):
    return request.param


def test_heads_are_registered():
    assert {"concat_mlp", "crossattn", "gated"} <= set(HEADS)


def test_output_shape(variant):
    head = build(*variant)
    tokens, masks = make_batch()
    out = head(tokens, masks)
    assert isinstance(head.out_dim, int) and head.out_dim > 0
    assert out.shape == (4, head.out_dim)
    assert torch.isfinite(out).all()


def test_dict_order_does_not_matter(variant):
    head = build(*variant)
    tokens, masks = make_batch()
    out = head(tokens, masks)
    reordered_tokens = {m: tokens[m] for m in reversed(list(tokens))}
    reordered_masks = {m: masks[m] for m in sorted(masks, key=lambda m: (len(m), m))}
    assert list(reordered_tokens) != list(tokens) and list(reordered_masks) != list(tokens)
    with torch.no_grad():
        torch.testing.assert_close(head(reordered_tokens, reordered_masks), out, atol=1e-5, rtol=0)


def test_padding_and_missing_modalities_are_ignored(variant):
    head = build(*variant)
    tokens, masks = make_batch()
    with torch.no_grad():
        clean = head(tokens, masks)
        dirty = head(with_garbage(tokens, masks), masks)
    assert torch.isfinite(dirty).all()
    torch.testing.assert_close(dirty, clean, atol=1e-5, rtol=0)


def test_amount_of_padding_does_not_matter(variant):
    # heads zero padded tokens on entry, so garbage alone cannot reveal a head that still attends
    # to (or averages over) padded slots; a batch padded further must give the same output too
    head = build(*variant)
    tokens, masks = make_batch()
    longer_tokens = {m: torch.cat([x, torch.randn(x.shape[0], 3, D) * 1e3], dim=1) for m, x in tokens.items()}
    longer_masks = {m: torch.cat([x, torch.zeros(x.shape[0], 3, dtype=torch.bool)], dim=1) for m, x in masks.items()}
    with torch.no_grad():
        torch.testing.assert_close(head(longer_tokens, longer_masks), head(tokens, masks), atol=1e-5, rtol=0)


def test_real_tokens_do_matter(variant):
    # the complement of the garbage test: changing a real token changes the output
    head = build(*variant)
    tokens, masks = make_batch()
    changed = {m: x.clone() for m, x in tokens.items()}
    changed["frames"][0, 0] += 3.0 * torch.randn(D, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert not torch.allclose(head(changed, masks)[0], head(tokens, masks)[0], atol=1e-4)


def test_sample_with_a_single_present_modality(variant):
    head = build(*variant)
    tokens, masks = make_batch(batch=4)
    only = {m: masks[m][3:4] for m in masks}
    assert only["frames"].any() and not only["audio"].any() and not only["text"].any()
    with torch.no_grad():
        alone = head({m: x[3:4] for m, x in tokens.items()}, only)
        in_batch = head(tokens, masks)[3:4]
    assert alone.shape == (1, head.out_dim) and torch.isfinite(alone).all()
    torch.testing.assert_close(alone, in_batch, atol=1e-5, rtol=0)  # no leakage across the batch


def test_single_modality_head(variant):
    name, options = variant
    head = build(name, options, modalities=("frames",))
    tokens, masks = make_batch(modalities=("frames",))
    with torch.no_grad():
        out = head(tokens, masks)
        dirty = head(with_garbage(tokens, masks), masks)
    assert out.shape == (4, head.out_dim) and torch.isfinite(out).all()
    torch.testing.assert_close(dirty, out, atol=1e-5, rtol=0)


def test_gradients_flow_and_padding_gets_none(variant):
    head = build(*variant).train()
    tokens, masks = make_batch()
    tokens = {m: x.requires_grad_(True) for m, x in with_garbage(tokens, masks).items()}
    head(tokens, masks).pow(2).sum().backward()
    grads = [p.grad for p in head.parameters() if p.requires_grad]
    assert grads and any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(g is None or torch.isfinite(g).all() for g in grads)
    for m, x in tokens.items():
        assert torch.isfinite(x.grad).all()
        assert torch.count_nonzero(x.grad[~masks[m]]) == 0  # padded tokens have no influence
        assert x.grad[masks[m]].abs().sum() > 0


def test_missing_input_modality_is_an_error(variant):
    head = build(*variant)
    tokens, masks = make_batch()
    del tokens["audio"], masks["audio"]
    with pytest.raises(KeyError, match="audio"):
        head(tokens, masks)


def test_unknown_head_lists_valid_names():
    with pytest.raises(UnknownNameError) as err:
        vemo.fusion.create("nope", modalities=["frames"], d_model=D)
    assert isinstance(err.value, KeyError)
    assert "nope" in str(err.value)
    assert all(name in str(err.value) for name in HEADS)


def test_unknown_option_names_the_head_and_its_options():
    with pytest.raises(ConfigError, match="fusion head 'gated' has no option 'no_such_option'; its options: hidden, dropout"):
        vemo.fusion.create("gated", modalities=["frames"], d_model=D, no_such_option=1)
    with pytest.raises(ConfigError, match="crossattn.*not divisible by num_heads=3"):
        vemo.fusion.create("crossattn", modalities=["frames"], d_model=D, num_heads=3)


def test_gated_exposes_modality_weights():
    head = build("gated", {})
    tokens, masks = make_batch()
    with pytest.raises(RuntimeError):
        head.modality_weights()
    with torch.no_grad():
        head(tokens, masks)
    gates = head.last_gates
    assert gates.shape == (4, len(LENGTHS), head.out_dim)
    present = torch.stack([masks[m].any(1) for m in sorted(LENGTHS)], dim=1)  # [B, n], sorted order
    assert torch.all(gates[~present] == 0)  # a missing modality gets no weight
    torch.testing.assert_close(gates.sum(1), torch.ones(4, head.out_dim))
    weights = head.modality_weights()
    assert list(weights) == sorted(LENGTHS)
    total = sum(weights.values())
    torch.testing.assert_close(total, torch.ones(4))
    assert weights["audio"][1] == 0 and weights["audio"][3] == 0
    assert weights["frames"][2] == 0 and weights["text"][2] == 0 and weights["text"][3] == 0
    torch.testing.assert_close(weights["frames"][3], torch.tensor(1.0))  # the only modality it has
    assert all(w[0] > 0 for w in weights.values())


def test_registry_rejects_double_registration():
    with pytest.raises(ValueError, match="already registered"):
        vemo.fusion.register("gated")(lambda **kw: None)


@pytest.mark.parametrize("vectors", [["text"], []], ids=["one-vector", "three-sequences"])
def test_pairwise_matches_one_attention_per_pair(vectors):
    """The batched pairs equal the published layout computed pair by pair: per-modality q/k/v
    projections, each pair's attention over the key modality's real tokens, LayerNorm, the mean over
    the query modality's real tokens; pairs without keys give zeros, vectors pass through; ReLU."""
    import itertools
    import torch.nn.functional as F

    head = build("pairwise", {"vector_modalities": vectors, "num_heads": 4})
    tokens, masks = make_batch()
    got = head(tokens, masks)
    seqs = head.sequences
    assert head.vectors == vectors and seqs == sorted(set(LENGTHS) - set(vectors))
    assert got.shape == (4, (len(vectors) + len(seqs) * (len(seqs) - 1)) * D)
    h, d = 4, D
    pair_vectors = []
    assert sorted(head.pairs) == list(itertools.permutations(range(len(seqs)), 2))
    for k, (i, j) in enumerate(head.pairs):
        qi = head.qkv_proj[seqs[i]](tokens[seqs[i]]).chunk(3, -1)[0]
        _, kj, vj = head.qkv_proj[seqs[j]](tokens[seqs[j]]).chunk(3, -1)
        # a modality's pair projections hold one slot per pair it takes part in, in pair order
        slot_q = [pair for pair in head.pairs if pair[0] == i].index((i, j))
        slot_kv = [pair for pair in head.pairs if pair[1] == j].index((i, j))
        n = len(seqs) - 1
        q = head.pair_q[seqs[i]](qi).unflatten(-1, (n, D))[:, :, slot_q]
        key = head.pair_k[seqs[j]](kj).unflatten(-1, (n, D))[:, :, slot_kv]
        val = head.pair_v[seqs[j]](vj).unflatten(-1, (n, D))[:, :, slot_kv]
        rows = []
        for b in range(q.shape[0]):
            qm, km = masks[seqs[i]][b], masks[seqs[j]][b]
            if not km.any() or not qm.any():
                rows.append(torch.zeros(d))
                continue
            qh = q[b][qm].view(-1, h, d // h).transpose(0, 1)
            kh = key[b][km].view(-1, h, d // h).transpose(0, 1)
            vh = val[b][km].view(-1, h, d // h).transpose(0, 1)
            att = torch.softmax(qh @ kh.transpose(1, 2) / (d // h) ** 0.5, -1) @ vh
            o = att.transpose(0, 1).reshape(-1, d) @ head.pair_out[k] + head.pair_out_bias[k]
            o = F.layer_norm(o, (d,), head.pair_norm_weight[k], head.pair_norm_bias[k])
            rows.append(o.mean(0))
        pair_vectors.append(torch.stack(rows))
    text = [torch.where(masks["text"].any(1, keepdim=True), tokens["text"][:, 0], head.missing[0])] if vectors else []
    want = torch.relu(torch.cat(text + pair_vectors, dim=-1))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_cls_only_last_layer_equals_the_full_layer():
    """Computing only the CLS row in the last layer (crossattn's pool, joint) changes nothing."""
    from vemo.fusion.attention import MaskedSelfAttentionLayer

    torch.manual_seed(0)
    layer = MaskedSelfAttentionLayer(D, 4, 2, 0.0).eval()
    x = torch.randn(3, 9, D)
    allowed = torch.rand(3, 1, 9) > 0.3
    allowed[:, :, 0] = True
    full = layer(x, allowed)
    torch.testing.assert_close(layer(x, allowed, queries=1), full[:, :1])


def test_crossattn_modalities_never_attend_to_themselves():
    """In crossattn's cross layers a token may see the null token and the real tokens of the
    other modalities, never its own modality's."""
    head = build("crossattn", {"depth": 1})
    seen = {}
    head.cross_layers[0].register_forward_pre_hook(lambda mod, args: seen.update(allowed=args[1]))
    tokens, masks = make_batch()
    head(tokens, masks)
    allowed = seen["allowed"]                    # [B, L, 1 + L]: the null key first
    lengths = [LENGTHS[m] for m in sorted(LENGTHS)]
    modality = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    assert allowed[:, :, 0].all()
    other = modality[:, None] != modality[None, :]
    real = torch.cat([masks[m] for m in sorted(LENGTHS)], dim=1)
    assert torch.equal(allowed[:, :, 1:], other[None] & real[:, None, :])


def test_attention_with_dropout_matches_torch_and_never_sees_masked_keys():
    """The CPU attention with the cheap dropout mask is torch's attention when nothing is dropped;
    with dropout, masked keys still have no influence and each weight is dropped at rate p."""
    from vemo.fusion.attention import masked_attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 2, 5, 8, generator=g) for _ in range(3))
    allowed = torch.rand(3, 1, 5, 5, generator=g) > 0.4
    allowed[..., 0] = True  # every query sees one key at least
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    # p below 1/65536 rounds to dropping nothing: the same attention as torch's
    torch.testing.assert_close(masked_attention(q, k, v, allowed, 1e-9), reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(masked_attention(q, k, v, allowed, 0.0), reference)
    garbage_k, garbage_v = k.clone(), v.clone()
    hidden = ~allowed.expand(3, 2, 5, 5).any(2)  # keys no query may see
    garbage_k[hidden], garbage_v[hidden] = 1e3, -1e3
    torch.manual_seed(3)
    dropped = masked_attention(q, k, v, allowed, 0.5)
    torch.manual_seed(3)
    torch.testing.assert_close(masked_attention(q, garbage_k, garbage_v, allowed, 0.5), dropped)
    assert not torch.allclose(dropped, reference, atol=1e-3)
    one_key = torch.ones(1, 1, 1, 1)  # 400 queries, one key: each weight is 1 before dropout
    out = masked_attention(torch.ones(1, 1, 400, 1), one_key, one_key, torch.ones(1, 1, 400, 1, dtype=torch.bool), 0.25)
    assert abs((out == 0).float().mean().item() - 0.25) < 0.07
    torch.testing.assert_close(out[out != 0], torch.full_like(out[out != 0], 1 / 0.75))


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_cpu_dropout_drops_at_rate_p_and_keeps_the_mean(p):
    """The heads' CPU dropout drops each element with probability p (independently, in every
    position: one random number gives four elements) and scales the rest by 1 / (1 - p), like
    nn.Dropout; in eval mode it changes nothing."""
    from vemo.fusion.dropout import Dropout

    torch.manual_seed(0)
    layer = Dropout(p)
    x = torch.ones(301, 1001)  # not a multiple of four elements
    y = layer(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.005
    for offset in range(4):  # each of a random number's four elements is dropped at rate p
        assert abs(kept.flatten()[offset::4].float().mean().item() - (1 - p)) < 0.01
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / (1 - p)))
    assert abs(y.mean().item() - 1.0) < 0.01
    assert torch.equal(layer.eval()(x), x)


def test_cpu_dropout_repeats_under_a_seed_and_masks_gradients():
    from vemo.fusion.dropout import Dropout

    layer = Dropout(0.3)
    x = torch.randn(4, 7, 16, requires_grad=True)
    torch.manual_seed(5)
    first = layer(x)
    torch.manual_seed(5)
    assert torch.equal(first, layer(x))
    first.sum().backward()
    assert torch.equal(x.grad == 0, first.detach() == 0)  # a dropped element gets no gradient
    half = Dropout(0.3)(torch.ones(64, 64, dtype=torch.bfloat16))
    assert half.dtype == torch.bfloat16 and abs((half != 0).float().mean().item() - 0.7) < 0.03
