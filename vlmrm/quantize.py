"""Int8 image tower for CPUs: W8A8 matmuls with per-token activation scales.

Why this exists: on CPUs without AMX (most cloud Xeons, all laptops) neither bf16 nor fp16
makes a ViT faster, because the matmul kernels convert to fp32 and run at fp32 FMA speed
(measured: fp16 1.1×, bf16 0.65× of fp32 for ViT-B-32). Integer dot products (AVX-512
VNNI / AVX-VNNI) do four times the multiply-adds per instruction, and oneDNN reaches
≈ 2.6× the fp32 GEMM rate through ``torch._int_mm``.

What is quantised, and how, is chosen for *rank fidelity* of rewards, not for size:

* every ``nn.Linear`` of the transformer blocks (attention in/out projections, MLP) —
  over 95% of the tower's FLOPs; the patch embedding, LayerNorms, softmax, GELU and the
  final projection stay fp32;
* weights: symmetric int8, one scale per output channel (computed once at load);
* activations: symmetric int8, one scale per *token*, computed on the fly. A single scale
  for a whole batch (what ``torch.ao`` dynamic quantisation does) lets one bright token
  coarsen every other token's grid; per-token scales keep each frame's own resolution, so
  the quantisation noise of a frame does not depend on the other frames in its batch;
* outlier channels (trained ViTs carry a few activation channels far larger than the
  rest) are smoothed into the weights first (SmoothQuant, α = 0.5, folded into the
  LayerNorms, so free at run time), calibrated on synthetic images at load. On ViT-B-32
  with planted outlier channels this halved the reward error (Spearman 0.994–0.996 →
  0.998–0.999); on plain random weights it cut the RMS error from 3.4e-5 to 2.4e-5;
* accumulation in int32 (exact), rescaled to fp32 before the bias;
* the class token's activations get ~15 bits (int8 value plus int8 residual, 2% more
  GEMM rows). The embedding is the class token's final state: noise on it lands in the
  reward directly, while noise on patch tokens is averaged by attention. On ViT-B-32
  (random weights, three frame sets) this took Spearman with fp32 rewards from
  0.995–0.998 to ≥ 0.999 and cut the RMS reward error ~3×; without it, quantising only 3
  of the 12 blocks was already below 0.999.

The rewards are then checked, not trusted: ``benchmarks/reward_throughput.py`` reports
Spearman with fp32 and max |Δreward| on a fixed frame set, and :func:`rank_fidelity`
does the same on a user's own frames (use it once per model and scene).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vlmrm.errors import ConfigError

_QMAX = 127.0


#: int8 values, per-row scales, per-row centres (None when symmetric).
Quantized = tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]


def _quantize_rows(x: torch.Tensor, centred: bool = False) -> Quantized:
    """int8 per row of a 2-D float tensor: ``x ≈ q · scale (+ centre)``.

    Symmetric (``centre`` None) spends the 255 levels on ``[-max|x|, max|x|]``; centred
    spends them on ``[min x, max x]``, twice the resolution for one-sided rows such as
    GELU outputs (≥ -0.17). The scaled values never leave [-127, 127]: no clamp needed.
    """
    # amax and amin are separate vectorised reductions; both together beat abs().amax()
    # (a temporary) and linalg.vector_norm(inf) (not vectorised) by 2-10x on CPU.
    hi, lo = x.amax(dim=-1, keepdim=True), x.amin(dim=-1, keepdim=True)
    if not centred:
        half = torch.maximum(hi, lo.neg_()).clamp_min_(1e-12)
        q = (x * (_QMAX / half)).round_().to(torch.int8)
        return q, half.div_(_QMAX), None
    centre = (hi + lo).mul_(0.5)
    half = (hi - lo).mul_(0.5).clamp_min_(1e-12)
    inv = _QMAX / half
    q = torch.addcmul(-centre * inv, x, inv).round_().to(torch.int8)
    return q, half.div_(_QMAX), centre


def _int_mm(a: torch.Tensor, b_t: torch.Tensor) -> torch.Tensor:
    """int8 (M, K) @ int8 (K, N) → int32 (M, N); pads M to the 17 rows the kernels want."""
    rows = a.shape[0]
    if rows > 16:
        return torch._int_mm(a, b_t)
    padded = torch.cat([a, a.new_zeros((17 - rows, a.shape[1]))])
    return torch._int_mm(padded, b_t)[:rows]


class Int8Linear(nn.Module):
    """``y = x Wᵀ + b`` with int8 ``x`` (per-token scales) and int8 ``W`` (per-channel).

    ``token_dim``/``exact_token``: a token (the class token of a ViT) whose activations
    get ~15 bits instead of 8. The reward reads only the class token's final state; patch
    tokens reach it through attention, which averages their quantisation noise over ~50
    tokens, but noise on the class token goes straight into the embedding. Its rows are
    quantised twice — the int8 value, then the int8 residual ``x - s·q`` — and both go
    through the same int8 GEMM as extra rows; its rows also meet the weights' int8
    rounding residual in one small GEMM (4% more work in all, no fp32 weights kept).

    ``all_rows``: every row gets the second (residual) activation pass, at twice the GEMM
    work; used for the attention values, whose noise reaches the class token directly.
    ``centred``: rows quantised over [min, max] instead of ±max (one-sided inputs).
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        token_dim: int | None = None,
        exact_token: int = 0,
        centred: bool = False,
        all_rows: bool = False,
    ) -> None:
        super().__init__()
        w = weight.detach().float()
        q, scale, _ = _quantize_rows(w)  # one scale per output channel
        w_deq = q.float() * scale
        self.int8_original_dtype = torch.float32  # what open_clip asks a block's dtype through
        self.in_features = int(w.shape[1])
        self.out_features = int(w.shape[0])
        self.token_dim = token_dim
        self.exact_token = exact_token
        self.centred = centred
        self.all_rows = all_rows
        # (K, N) column-major int8 is the layout oneDNN's s8s8 GEMM reads without a copy.
        self.register_buffer("weight_t", q.t())
        self.register_buffer("weight_scale", scale.reshape(1, -1))
        # Row sums of the weights as quantised: what a row's centre contributes.
        self.register_buffer("weight_sum", w_deq.sum(1).reshape(1, -1) if centred else None)
        # The weights' own rounding residual, in int8 too: the exact token's rows also
        # multiply it, so they see ~15-bit weights as well.
        self.register_buffer("residual_t", None)
        self.register_buffer("residual_scale", None)
        self.register_buffer("residual_sum", None)
        if token_dim is not None:
            rq, rscale, _ = _quantize_rows(w - w_deq)
            self.residual_t, self.residual_scale = rq.t(), rscale.reshape(1, -1)
            self.residual_sum = (rq.float() * rscale).sum(1).reshape(1, -1)
        self.register_buffer(
            "bias", None if bias is None else bias.detach().float().reshape(1, -1).clone()
        )

    @classmethod
    def from_linear(cls, linear: nn.Linear, **options: object) -> Int8Linear:
        return cls(linear.weight, linear.bias, **options)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor, quantized: Quantized | None = None) -> torch.Tensor:
        """``quantized``: ``x`` already through :func:`_quantize_rows` (same ``centred``),
        when several layers read the same input."""
        shape = x.shape
        x = x.float()
        if quantized is None:
            quantized = _quantize_rows(x.reshape(-1, shape[-1]), self.centred)
        q, xs, centre = quantized
        rows = q.shape[0]
        tokens = shape[:-1]

        def pick(t: torch.Tensor) -> torch.Tensor:  # the exact token's rows of a row tensor
            return t.view(*tokens, t.shape[-1]).select(self.token_dim, self.exact_token)

        # Rows that get a second int8 pass (their rounding residual, as extra GEMM rows).
        if self.all_rows:
            src, q_src, s_src, c_src = x.reshape(-1, shape[-1]), q, xs, centre
        elif self.token_dim is not None:
            src, q_src, s_src = pick(x), pick(q), pick(xs)
            c_src = None if centre is None else pick(centre)
        else:
            src = None
        if src is None:
            acc = _int_mm(q, self.weight_t)
        else:
            x_hat = q_src.float().mul_(s_src)
            if c_src is not None:
                x_hat += c_src
            q_res, s_res, _ = _quantize_rows(src - x_hat)
            acc = _int_mm(torch.cat([q, q_res]), self.weight_t)
        y = acc[:rows].to(torch.float32).mul_(xs)
        if src is not None:
            target = y if self.all_rows else pick(y)
            target.addcmul_(acc[rows:].to(torch.float32), s_res)
        y.mul_(self.weight_scale)
        if centre is not None:
            y.addmm_(centre, self.weight_sum)
        if self.token_dim is not None:
            # The exact token also meets the weights' rounding residual.
            q_tok, s_tok = pick(q), pick(xs)
            w_res = (
                _int_mm(q_tok.contiguous(), self.residual_t)
                .to(torch.float32)
                .mul_(self.residual_scale)
            )
            y_tok = pick(y)
            y_tok.addcmul_(w_res, s_tok)
            if centre is not None:
                y_tok.addmm_(pick(centre), self.residual_sum)
        if self.bias is not None:
            y.add_(self.bias)
        return y.view(*tokens, self.out_features)

    def extra_repr(self) -> str:
        exact = (
            ""
            if self.token_dim is None
            else f", token {self.exact_token} of dim {self.token_dim} at ~15 bits"
        )
        return f"in_features={self.in_features}, out_features={self.out_features}, W8A8{exact}"


class Int8SelfAttention(nn.Module):
    """Drop-in for the ``nn.MultiheadAttention`` of a ViT block, self-attention only.

    Called the way open_clip calls it (``attn(x, x, x, need_weights=False,
    attn_mask=...)``); projections in int8, the attention itself (softmax) in fp32.
    """

    def __init__(self, mha: nn.MultiheadAttention) -> None:
        super().__init__()
        if not mha._qkv_same_embed_dim or mha.in_proj_weight is None:
            raise ConfigError("int8 attention needs a fused in-projection (self-attention)")
        self.num_heads = mha.num_heads
        self.embed_dim = mha.embed_dim
        self.batch_first = mha.batch_first
        # Inside, tensors are batch-first: tokens along dim 1. The value projection gets
        # ~15-bit activations on every row: the class token's attention output is a
        # weighted sum of the patch tokens' values, and their noise was measured to be
        # most of the reward error (3.7e-5 RMS alone on ViT-B-32, vs ≤ 1.1e-5 for queries
        # or keys, ≤ 1.8e-5 for each of the other projections).
        d = mha.embed_dim
        w, b = mha.in_proj_weight, mha.in_proj_bias
        self.qk_proj = Int8Linear(w[: 2 * d], None if b is None else b[: 2 * d], token_dim=1)
        self.v_proj = Int8Linear(
            w[2 * d :], None if b is None else b[2 * d :], token_dim=1, all_rows=True
        )
        self.out_proj = Int8Linear(mha.out_proj.weight, mha.out_proj.bias, token_dim=1)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        need_weights: bool = False,
        attn_mask: torch.Tensor | None = None,
        **_: object,
    ) -> tuple[torch.Tensor, None]:
        if (key is not None and key is not query) or (value is not None and value is not query):
            raise ConfigError("int8 attention supports self-attention only (query is key is value)")
        x = query if self.batch_first else query.transpose(0, 1)
        out = self.attend(x, attn_mask)
        return (out if self.batch_first else out.transpose(0, 1)), None

    def attend(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, queries: int | None = None
    ) -> torch.Tensor:
        """Batch-first self-attention; with ``queries=k`` only the first ``k`` tokens' outputs."""
        b, n, d = x.shape
        h = self.num_heads
        x = x.float()
        quantized = _quantize_rows(x.reshape(-1, d))  # one pass serves both projections
        qk = self.qk_proj(x, quantized).reshape(b, n, 2, h, d // h).permute(2, 0, 3, 1, 4)
        v = self.v_proj(x, quantized).reshape(b, n, h, d // h).transpose(1, 2)
        q = qk[0] if queries is None else qk[0][:, :, :queries]
        mask = (
            attn_mask.float()
            if attn_mask is not None and attn_mask.is_floating_point()
            else attn_mask
        )
        if mask is not None and queries is not None:
            mask = mask[..., :queries, :]
        out = F.scaled_dot_product_attention(q, qk[1], v, attn_mask=mask)
        return self.out_proj(out.transpose(1, 2).reshape(b, q.shape[2], d))


class ClassTokenBlock(nn.Module):
    """The last block of a class-token ViT, computed for the class token only.

    After the last block the tower reads the class token and nothing else, so the patch
    tokens' attention output and MLP there are wasted work (~6% of the tower). Keys and
    values still come from every token. The patch tokens it returns are its input, one
    block old; :func:`quantize_image_tower` does not install it on towers that output
    their tokens.
    """

    def __init__(self, block: nn.Module, batch_first: bool) -> None:
        super().__init__()
        self.block = block
        self.batch_first = batch_first

    def forward(
        self, q_x: torch.Tensor, k_x=None, v_x=None, attn_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        blk = self.block
        x = q_x if self.batch_first else q_x.transpose(0, 1)
        cls = x[:, :1] + blk.ls_1(blk.attn.attend(blk.ln_1(x), attn_mask, queries=1))
        cls = cls + blk.ls_2(blk.mlp(blk.ln_2(cls)))
        out = torch.cat([cls, x[:, 1:]], dim=1)
        return out if self.batch_first else out.transpose(0, 1)


SMOOTHING_ALPHA = 0.5


def calibration_images(size: int, n: int = 8, seed: int = 0) -> torch.Tensor:
    """Smooth random scenes (seeded), normalised roughly as CLIP inputs: ``(n, 3, S, S)``.

    Used only to find which channels carry large activations. In trained ViTs those
    "massive activation" channels are largely the same for any input, so synthetic
    images locate them without a data set.
    """
    gen = torch.Generator().manual_seed(seed)
    low = torch.rand((n, 3, 8, 8), generator=gen)
    x = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return (x - 0.45) / 0.27


def _smooth_into_layernorm(
    ln: nn.Module, weights: list[torch.Tensor], act_max: torch.Tensor, alpha: float
) -> None:
    """SmoothQuant, folded: divide channel c of a LayerNorm's output by s_c and multiply
    column c of the Linear weights that read it by s_c. The fp32 function is unchanged;
    an outlier channel's range moves into the weights (quantised per output channel,
    where one column barely matters) instead of coarsening every other channel of its
    token's int8 grid."""
    w_max = torch.stack([w.detach().abs().amax(dim=0) for w in weights]).amax(dim=0)
    scale = (act_max.clamp_min(1e-5) ** alpha) / (w_max.clamp_min(1e-5) ** (1 - alpha))
    scale = scale.clamp_min(1e-5)
    with torch.no_grad():
        ln.weight.div_(scale)
        if getattr(ln, "bias", None) is not None:
            ln.bias.div_(scale)
        for w in weights:
            w.mul_(scale)


def _layernorm_maxima(visual: nn.Module, blocks: nn.ModuleList, images: torch.Tensor) -> dict:
    """Per-channel max |output| of every block's ln_1 and ln_2 on ``images`` (fp32)."""
    maxima: dict[nn.Module, torch.Tensor] = {}

    def record(module: nn.Module, _inputs: object, out: torch.Tensor) -> None:
        m = out.detach().float().abs().reshape(-1, out.shape[-1]).amax(dim=0)
        maxima[module] = torch.maximum(maxima[module], m) if module in maxima else m

    hooks = [blk.ln_1.register_forward_hook(record) for blk in blocks]
    hooks += [blk.ln_2.register_forward_hook(record) for blk in blocks]
    try:
        with torch.inference_mode():
            visual(images.to(next(visual.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    return maxima


def quantize_image_tower(
    model: nn.Module,
    calibration: torch.Tensor | None = None,
    smoothing: float | None = SMOOTHING_ALPHA,
) -> int:
    """Replace the Linear layers of ``model.visual``'s transformer blocks by int8 ones.

    ``calibration``: normalised images ``(N, 3, S, S)`` used to find outlier activation
    channels, which are then smoothed into the weights (:func:`_smooth_into_layernorm`);
    default: :func:`calibration_images`. ``smoothing``: SmoothQuant's α (how much of an
    outlier's range moves into the weights; 0.5 measured best here), ``None`` for none.
    Returns how many blocks were converted.
    Supported: open_clip ``VisionTransformer`` towers that pool the class token (every
    OpenAI and LAION CLIP ViT); anything else is a clear error rather than a silently
    worse reward.
    """
    visual = getattr(model, "visual", None)
    transformer = getattr(visual, "transformer", None)
    blocks = getattr(transformer, "resblocks", None)
    if blocks is None or getattr(visual, "class_embedding", None) is None:
        raise ConfigError(
            f"precision='int8' supports ViT image towers with a class token only; "
            f"{type(visual).__name__} is not one. Use precision='fp32' for this model."
        )
    if (
        getattr(visual, "pool_type", "tok") != "tok"
        or getattr(visual, "attn_pool", None) is not None
    ):
        raise ConfigError(
            "precision='int8' needs a tower that pools the class token (pool_type='tok'); "
            "use precision='fp32' for this model"
        )
    token_dim = 1 if getattr(transformer, "batch_first", True) else 0
    for block in blocks:
        attn, mlp = getattr(block, "attn", None), getattr(block, "mlp", None)
        if not isinstance(attn, nn.MultiheadAttention) or not isinstance(
            getattr(mlp, "c_fc", None), nn.Linear
        ):
            raise ConfigError(
                f"precision='int8' does not know the block type {type(block).__name__}; "
                "use precision='fp32' for this model"
            )
    if smoothing is not None:
        if calibration is None:
            size = visual.image_size
            calibration = calibration_images(int(size if isinstance(size, int) else size[0]))
        maxima = _layernorm_maxima(visual, blocks, calibration)
        for block in blocks:
            if getattr(block.ln_1, "weight", None) is not None:
                _smooth_into_layernorm(block.ln_1, [block.attn.in_proj_weight], maxima[block.ln_1], smoothing)
            if getattr(block.ln_2, "weight", None) is not None:
                _smooth_into_layernorm(block.ln_2, [block.mlp.c_fc.weight], maxima[block.ln_2], smoothing)
    converted = 0
    for block in blocks:
        attn, mlp = block.attn, block.mlp
        block.attn = Int8SelfAttention(attn)
        for name in ("c_fc", "c_proj"):
            layer = getattr(mlp, name, None)
            if isinstance(layer, nn.Linear):
                # c_proj reads GELU outputs (one-sided): centred rows double its resolution.
                centred = name == "c_proj"
                setattr(
                    mlp, name, Int8Linear.from_linear(layer, token_dim=token_dim, centred=centred)
                )
        converted += 1
    if not getattr(visual, "output_tokens", False) and hasattr(blocks[-1], "ln_1"):
        blocks[-1] = ClassTokenBlock(blocks[-1], batch_first=token_dim == 1)
    return converted
