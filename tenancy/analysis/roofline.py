"""The analytical cost of a tenant's step: FLOPs and bytes from the model config alone.

Why: a measured latency means little without the time the step cannot beat on this device
(Pope et al., "Efficiently Scaling Transformer Inference"). Every count here is a formula over the
config; tests check them against hand computations and `torch.utils.flop_counter`.

Conventions (d hidden, L layers, h heads, k KV heads, e head_dim, f intermediate, V vocab,
b batch, S sequence, c context):
- FLOPs are matmul FLOPs, 2 per multiply-add, what FlopCounterMode counts. Norms, activations,
  softmax and bias adds (<1% here) are left out. Attention is dense over S x S (eager and SDPA
  math kernels compute the masked half too).
- Bytes are the minimum traffic of a call: every weight matrix read once, the KV cache read by
  each decode step and written once. Activations are assumed to stay on chip, so the floor built
  from them is a lower bound.
"""
from __future__ import annotations

from dataclasses import dataclass

from tenancy.models import zoo


@dataclass(frozen=True)
class Dims:
    """The shapes that set the cost, normalised across families (GPT-2 names its fields n_*)."""

    d: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    gated: bool  # SwiGLU MLP: three d x f matrices instead of two
    head: bool  # a decoder's LM head (d x V) runs on the last position(s)
    pooler: bool  # BERT's pooler: one d x d matmul on the first token
    rel_rows: int  # DeBERTa: 2 x position_buckets relative-position rows, projected in every layer
    positions: int  # absolute position embeddings (0: none)
    type_vocab: int
    tied: bool

    @property
    def attn_params(self) -> int:
        """Q and O are d x h.e, K and V d x k.e."""
        return 2 * self.d * self.heads * self.head_dim + 2 * self.d * self.kv_heads * self.head_dim

    @property
    def layer_params(self) -> int:
        """Matmul weights of one layer: attention plus the MLP."""
        return self.attn_params + (3 if self.gated else 2) * self.d * self.ffn

    @property
    def kv_per_token(self) -> int:
        """KV-cache elements per token: K and V of every layer."""
        return 2 * self.layers * self.kv_heads * self.head_dim


GATED = ("llama", "mistral", "qwen2", "qwen3", "phi3", "gemma", "gemma2", "mixtral", "olmo", "olmo2", "granite",
         "modernbert")  # families whose MLP is gated (three d x f matrices; ModernBERT's Wi is d x 2f)


def dims(model: str, size: str = "full") -> Dims:
    """From the model's transformers config (a zoo config or a folder's config.json): attribute
    names resolve through the config's attribute_map, so GPT-2's n_embd is hidden_size. A family
    not listed in GATED is counted as a plain two-matrix MLP."""
    spec = zoo.get(model)
    c = spec.make_config(size)
    g = lambda key, default=None: getattr(c, key, None) or default  # noqa: E731
    d, heads = c.hidden_size, c.num_attention_heads
    if spec.family == "gpt2":
        return Dims(d=d, layers=c.num_hidden_layers, heads=heads, kv_heads=heads, head_dim=d // heads,
                    ffn=g("n_inner", 4 * d), vocab=c.vocab_size, gated=False, head=True, pooler=False,
                    rel_rows=0, positions=c.n_positions, type_vocab=0, tied=True)
    deberta = spec.family == "deberta-v2"
    return Dims(d=d, layers=c.num_hidden_layers, heads=heads, kv_heads=g("num_key_value_heads", heads),
                head_dim=g("head_dim", d // heads), ffn=g("intermediate_size", 4 * d), vocab=c.vocab_size,
                gated=spec.family in GATED, head=spec.kind == "decoder", pooler=spec.family == "bert",
                rel_rows=2 * c.position_buckets if deberta and g("relative_attention") else 0,
                positions=c.max_position_embeddings if spec.family == "bert" else 0,
                type_vocab=g("type_vocab_size", 0) if spec.kind == "encoder" else 0,
                tied=bool(getattr(c, "tie_word_embeddings", True)))


@dataclass(frozen=True)
class Cost:
    """FLOPs and bytes of one model call (or a sum of calls)."""

    flops: float
    bytes: float

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, FLOP per byte: above the device's ridge the call is compute-bound."""
        return self.flops / self.bytes if self.bytes else float("inf")

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.flops + other.flops, self.bytes + other.bytes)


def matmul_weights(m: Dims) -> int:
    """Weights a call reads through matmuls: L layers, the LM head (d x V, also when tied), the
    pooler, DeBERTa's relative-position table."""
    return (m.layers * m.layer_params + (m.d * m.vocab if m.head else 0) + (m.d * m.d if m.pooler else 0)
            + m.rel_rows * m.d)


def weight_params(m: Dims) -> int:
    """Resident parameters (norms and biases left out): matmul weights plus the embedding tables;
    a tied LM head is the token embedding, counted once."""
    embed = m.vocab * m.d + m.positions * m.d + m.type_vocab * m.d
    return matmul_weights(m) + embed - (m.d * m.vocab if m.head and m.tied else 0)


def _layers_flops(m: Dims, b: int, q: int, c: int) -> float:
    """b sequences of q new tokens attending over c positions, through L layers:
    2.b.q.(layer params) for the projections and MLP, plus 4.b.h.e.q.c for QK^T and AV, plus
    DeBERTa's disentangled attention: projecting the relative table through Q and K
    (2 x 2.R.d.d, per layer, independent of b) and the c2p and p2c scores (2 x 2.b.h.e.q.R)."""
    per_layer = 2 * b * q * m.layer_params + 4 * b * m.heads * m.head_dim * q * c
    if m.rel_rows:
        per_layer += 2 * 2 * m.rel_rows * m.d * m.d + 2 * 2 * b * m.heads * m.head_dim * q * m.rel_rows
    return m.layers * per_layer


def forward(m: Dims, batch: int, seq: int, dtype_bytes: int) -> Cost:
    """An encoder forward pass over batch x seq (BERT adds its pooler on the first token)."""
    flops = _layers_flops(m, batch, seq, seq) + (2 * batch * m.d * m.d if m.pooler else 0)
    return Cost(flops, matmul_weights(m) * dtype_bytes)


def prefill(m: Dims, batch: int, seq: int, dtype_bytes: int, head_tokens: int = 1) -> Cost:
    """A decoder's prefill: all seq tokens through the layers, the LM head on the last
    `head_tokens` (generate keeps one), the prompt's K and V written to the cache."""
    flops = _layers_flops(m, batch, seq, seq) + 2 * batch * head_tokens * m.d * m.vocab
    kv_write = batch * seq * m.kv_per_token
    return Cost(flops, (matmul_weights(m) + kv_write) * dtype_bytes)


def decode(m: Dims, batch: int, context: int, dtype_bytes: int) -> Cost:
    """One decode step: one new token per sequence attending over `context` positions (itself
    included): read every weight and the `context - 1` cached tokens' K and V, write its own."""
    flops = _layers_flops(m, batch, 1, context) + 2 * batch * m.d * m.vocab
    kv = batch * context * m.kv_per_token
    return Cost(flops, (matmul_weights(m) + kv) * dtype_bytes)


def generate(m: Dims, batch: int, seq: int, new_tokens: int, dtype_bytes: int) -> list[Cost]:
    """What one `generate` iteration runs: prefill (the first token), then new_tokens - 1 decode
    steps; step i attends over seq + i positions."""
    return [prefill(m, batch, seq, dtype_bytes)] + [decode(m, batch, seq + i, dtype_bytes)
                                                    for i in range(1, new_tokens)]


def serve_iteration(m: Dims, prompts: list[int], contexts: list[int], dtype_bytes: int) -> Cost:
    """One iteration of the serving engine (selective batching): every prompt token and one token
    per running request share the projections and MLP (the weights are read once); attention is
    per request, over its prompt or its context; the LM head runs once per request."""
    tokens = sum(prompts) + len(contexts)
    attn = sum(p * p for p in prompts) + sum(contexts)
    flops = m.layers * (2 * tokens * m.layer_params + 4 * m.heads * m.head_dim * attn)
    flops += 2 * (len(prompts) + len(contexts)) * m.d * m.vocab
    kv = (sum(prompts) + sum(contexts)) * m.kv_per_token
    return Cost(flops, (matmul_weights(m) + kv) * dtype_bytes)


def step_costs(model: str, size: str, task: str, batch: int, seq: int, new_tokens: int, dtype: str) -> list[Cost]:
    """The calls of one measured iteration of a closed-loop tenant (empty for `serve`, whose work
    depends on its neighbours in each batch)."""
    m, nb = dims(model, size), zoo.DTYPE_BYTES[dtype]
    if task == "forward":
        return [forward(m, batch, seq, nb)]
    if task == "generate":
        return generate(m, batch, seq, new_tokens, nb)
    return []


@dataclass(frozen=True)
class Floor:
    """A step's floor on a device: each call takes at least max(FLOPs/peak, bytes/peak bw)."""

    flops: float
    bytes: float
    floor_s: float
    bound: str  # compute | memory: the resource that sets most of the floor
    weights_bytes: float
    kv_bytes: float  # the KV cache at the end of the step (decoders)


def floor(costs: list[Cost], flops_per_s: float, bytes_per_s: float, weights_bytes: float = 0.0,
          kv_bytes: float = 0.0) -> Floor:
    """Sum of per-call floors: a generate step's compute-bound prefill and memory-bound decode
    steps are each bound by their own resource."""
    compute = memory = 0.0
    for c in costs:
        tc, tm = c.flops / flops_per_s, c.bytes / bytes_per_s
        if tc >= tm:
            compute += tc
        else:
            memory += tm
    return Floor(flops=sum(c.flops for c in costs), bytes=sum(c.bytes for c in costs), floor_s=compute + memory,
                 bound="compute" if compute >= memory else "memory", weights_bytes=weights_bytes, kv_bytes=kv_bytes)


def tenant_floor(work: dict, peak: dict) -> Floor | None:
    """The floor of a tenant's step (`work`: model, size, task, batch, seq, new_tokens, dtype) on
    measured peaks (`peak`: flops_per_s, bytes_per_s); None for serving tenants, and for a
    folder model no longer on this machine (a report read elsewhere has no config to count)."""
    try:
        zoo.get(work["model"])
    except zoo.UnknownModel:
        return None
    costs = step_costs(work["model"], work["size"], work["task"], int(work["batch"]), int(work["seq"]),
                       int(work.get("new_tokens") or 1), work["dtype"])
    if not costs:
        return None
    m, nb = dims(work["model"], work["size"]), zoo.DTYPE_BYTES[work["dtype"]]
    kv = (int(work["batch"]) * (int(work["seq"]) + int(work.get("new_tokens") or 1) - 1) * m.kv_per_token * nb
          if work["task"] == "generate" else 0)
    return floor(costs, peak["flops_per_s"], peak["bytes_per_s"], weight_params(m) * nb, kv)
