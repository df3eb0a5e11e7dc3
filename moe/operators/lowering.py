"""How one logical operator becomes kernels in training and in serving.

The inventory (:mod:`moe.operators.attention`, :mod:`moe.operators.inventory`) describes a layer once,
as calls on a lowering: ``linear``, ``norm``, ``memory``, ``activation``, ``core_attention``. The
training lowering turns each into its forward kernels and the kernels the backward pass needs
(data-gradient GEMM, weight-gradient GEMM, FP8 casts of dY and of the transposed inputs, and the
forward run again where the recompute policy asks); the serving lowering into the kernels an
inference engine launches for a prefill or decode step (RMSNorm fused with the residual add, one
FP8 cast shared by the projections that read the same input).

Each lowering appends :class:`moe.operators.op.Op` records, tagged with the stage the simulator
groups them into (``stage``) and, in training, the phase.
"""

from __future__ import annotations

from collections.abc import Sequence

from moe.operators.op import Attention, Gemm, Given, Memory, Op, OpKind, Phase, Work

__all__ = ["FP8_SCALE_BYTES_PER_VALUE", "Lowering", "ServingLowering", "TrainingLowering"]

# DeepSeek-V3 fine-grained FP8: one FP32 scale per 1x128 tile (V3-TR 3.3.2)
FP8_SCALE_BYTES_PER_VALUE = 4.0 / 128.0
BF16 = 2.0
CAST_BYTES = BF16 + 1.0 + FP8_SCALE_BYTES_PER_VALUE  # read BF16, write FP8 and its scales
NORM_ROPE = "norm_rope"  # sim.timing's fitted family of RMSNorm and RoPE kernels


class Lowering:
    """What both lowerings share: the op list, the current stage, tokens and the GEMM dtype."""

    training = False
    serving = False

    def __init__(self, tokens: int, gemm_dtype: str, stage: str) -> None:
        self.tokens = tokens
        self.gemm_dtype = gemm_dtype
        self.fp8 = gemm_dtype == "fp8"
        self.stage = stage
        self.ops: list[Op] = []

    def emit(
        self,
        name: str,
        kind: OpKind,
        work: Work,
        phase: Phase | None = None,
        stage: str | None = None,
        split: tuple[str, ...] = (),
    ) -> None:
        self.ops.append(
            Op(
                name,
                kind,
                work,
                self.phase if phase is None else phase,
                self.stage if stage is None else stage,
                split,
            )
        )

    @property
    def phase(self) -> Phase:
        return Phase.FORWARD

    @property
    def decode(self) -> bool:
        """A served decode step (MLA runs absorbed)."""
        return False

    # the logical operators each lowering implements
    def norm(self, name: str, elements: float, residual: bool = False) -> None:
        raise NotImplementedError

    def memory(
        self,
        name: str,
        kind: OpKind,
        forward_bytes: float,
        backward_bytes: float | None = None,
        recompute: bool = False,
        family: str = "memory_bound",
        backward_name: str | None = None,
    ) -> None:
        raise NotImplementedError

    def linear(
        self,
        name: str,
        n: float,
        k: float,
        *,
        rows: float | None = None,
        cast: bool = True,
        recomputed: bool = False,
        kind: OpKind = OpKind.DENSE_GEMM,
        cast_name: str | None = None,
    ) -> None:
        raise NotImplementedError

    def input_projections(
        self,
        projections: Sequence[tuple[str, float, bool]],
        k: float,
        cast_name: str,
        fused_name: str | None = None,
    ) -> None:
        raise NotImplementedError

    def activation(self, name: str, rows: float, inter: float) -> None:
        raise NotImplementedError

    def gemm(self, name: str, kind: OpKind, m: float, n: float, k: float, dtype: str, batch: int = 1) -> None:
        """A GEMM the layer runs as it is in both runtimes (no cast, no backward of its own)."""
        raise NotImplementedError

    def core_attention(self) -> None:
        """The core attention kernel where the runtime times it with the block (serving)."""
        raise NotImplementedError


# Megatron-LM's ``--recompute-modules`` (megatron/core/transformer/moe/README.md, "Fine-grained
# Recomputation"): what each names is re-run in the backward. "dense_act" (the SwiGLU of dense and
# shared-expert FFNs, recomputed by DeepSeek-V3, V3-TR 3.3.4) has no Megatron name.
RECOMPUTE_MODULES = ("core_attn", "layernorm", "moe_act", "mla_up_proj", "mlp", "shared_experts")
# DeepSeek-V3's selective recomputation (V3-TR 3.2.3: all RMSNorms and the MLA up-projections;
# 3.3.4: the SwiGLU of the MoE from its cached FP8 input): ``recompute="selective"`` without modules.
V3_SELECTIVE_MODULES = ("layernorm", "moe_act", "mla_up_proj", "dense_act")


def default_recompute_modules(recompute: str) -> frozenset[str]:
    """The recomputed modules of a recompute policy named without modules: DeepSeek-V3's set for
    "selective", everything for "full", nothing for "none"."""
    if recompute == "selective":
        return frozenset(V3_SELECTIVE_MODULES)
    if recompute == "full":
        return frozenset(RECOMPUTE_MODULES + ("dense_act",))
    return frozenset()


class TrainingLowering(Lowering):
    """Training kernels (Megatron-style unfused layers with DeepSeek-V3's FP8 recipe).

    ``recompute``: "none", "selective" or "full" (the whole forward again); ``modules``: what runs
    again in the backward (:data:`RECOMPUTE_MODULES`; by default :func:`default_recompute_modules`
    of ``recompute``). ``module`` names the module the operators being emitted belong to ("mlp",
    "shared_experts", "experts"), for module-level recomputation."""

    training = True

    def __init__(
        self,
        tokens: int,
        gemm_dtype: str,
        recompute: str,
        stage: str = "attention",
        modules: frozenset[str] | None = None,
    ) -> None:
        super().__init__(tokens, gemm_dtype, stage)
        self.recompute = recompute
        self.modules = default_recompute_modules(recompute) if modules is None else frozenset(modules)
        self.recompute_norms = "layernorm" in self.modules or recompute == "full"
        self.module = ""

    def again(self, recomputed: bool) -> bool:
        """Whether a forward piece marked ``recomputed`` (MLA's up-projections and their like) runs
        again in the backward; every piece of a module recomputed whole does."""
        return (
            (recomputed and "mla_up_proj" in self.modules)
            or self.recompute == "full"
            or self.module in self.modules
        )

    def norm(self, name: str, elements: float, residual: bool = False) -> None:
        """RMSNorm: forward reads x and writes y; backward reads x and dy, writes dx; recomputed
        when ``layernorm`` is (selective and full recomputation). (The residual add is its own
        kernel in training.)"""
        b = elements * BF16
        self.emit(name, OpKind.NORM, Memory(2 * b, NORM_ROPE))
        self.emit(f"{name} bwd", OpKind.NORM, Memory(3 * b, NORM_ROPE), Phase.BACKWARD)
        if self.recompute_norms:
            self.emit(f"{name} (recompute)", OpKind.NORM, Memory(2 * b, NORM_ROPE), Phase.RECOMPUTE)

    def memory(
        self,
        name: str,
        kind: OpKind,
        forward_bytes: float,
        backward_bytes: float | None = None,
        recompute: bool = False,
        family: str = "memory_bound",
        backward_name: str | None = None,
    ) -> None:
        """A bandwidth-bound kernel, its backward (when ``backward_bytes`` is given) and its rerun."""
        self.emit(name, kind, Memory(forward_bytes, family))
        if backward_bytes is not None:
            self.emit(backward_name or f"{name} bwd", kind, Memory(backward_bytes, family), Phase.BACKWARD)
        if recompute:
            self.emit(f"{name} (recompute)", kind, Memory(forward_bytes, family), Phase.RECOMPUTE)

    def linear(
        self,
        name: str,
        n: float,
        k: float,
        *,
        rows: float | None = None,
        cast: bool = True,
        recomputed: bool = False,
        kind: OpKind = OpKind.DENSE_GEMM,
        cast_name: str | None = None,
    ) -> None:
        """Y[rows, n] = X[rows, k] W[k, n] in the GEMM dtype (V3-TR 3.3.2 for FP8): the forward
        casts X per 1x128 tile (unless its producer wrote it quantised, ``cast=False``); dgrad casts
        dY; wgrad (a reduction over the tokens) needs X^T and dY^T quantised along the tokens,
        transposed FP8 copies. A recomputed linear runs again, with its cast, in the backward."""
        m = max(1, int(self.tokens if rows is None else rows))
        n_, k_ = max(1, int(n)), max(1, int(k))
        g = self.gemm_dtype
        cast_x = self.fp8 and cast
        if cast_x:
            self.emit(f"cast {name} X", OpKind.FP8_CAST, Memory(m * k_ * CAST_BYTES))
        self.emit(name, kind, Gemm(m, n_, k_, g))
        if self.again(recomputed):
            if cast_x:
                self.emit(
                    f"cast {name} X (recompute)",
                    OpKind.FP8_CAST,
                    Memory(m * k_ * CAST_BYTES),
                    Phase.RECOMPUTE,
                )
            self.emit(f"{name} (recompute)", kind, Gemm(m, n_, k_, g), Phase.RECOMPUTE)
        if self.fp8:
            self.emit(f"cast {name} dY", OpKind.FP8_CAST, Memory(m * n_ * CAST_BYTES), Phase.BACKWARD)
        self.emit(f"{name} dgrad", kind, Gemm(m, k_, n_, g), Phase.BACKWARD)
        if self.fp8:
            self.emit(
                f"cast {name} X^T,dY^T", OpKind.FP8_CAST, Memory(m * (n_ + k_) * CAST_BYTES), Phase.WEIGHT
            )
        self.emit(f"{name} wgrad", kind, Gemm(k_, n_, m, g, wgrad=True), Phase.WEIGHT)

    def input_projections(
        self,
        projections: Sequence[tuple[str, float, bool]],
        k: float,
        cast_name: str,
        fused_name: str | None = None,
    ) -> None:
        """Projections reading the same input: in training each is its own linear with its own cast."""
        for name, n, recomputed in projections:
            self.linear(name, n, k, recomputed=recomputed)

    def activation(self, name: str, rows: float, inter: float) -> None:
        """SwiGLU over [rows, 2 x inter] -> [rows, inter]; with FP8 GEMMs the output is written
        quantised for the down projection (fused cast). Backward reads the saved input and the output
        gradient, writes the input gradient; with recomputation (V3-TR 3.2.3) the forward runs again."""
        out_b = (1.0 + FP8_SCALE_BYTES_PER_VALUE) if self.fp8 else BF16
        fwd = rows * 2 * inter * BF16 + rows * inter * out_b
        bwd = rows * 2 * inter * BF16 * 2 + rows * inter * BF16
        act_module = "moe_act" if self.module == "experts" else "dense_act"
        rerun = act_module in self.modules or self.recompute == "full" or self.module in self.modules
        self.memory(name, OpKind.ACTIVATION, fwd, bwd, recompute=rerun)


class ServingLowering(Lowering):
    """Inference kernels of one prefill or decode step (SGLang / DeepSeek-style)."""

    serving = True

    def __init__(
        self, tokens: int, gemm_dtype: str, phase: Phase, stage: str = "attention", core_s: float = 0.0
    ) -> None:
        super().__init__(tokens, gemm_dtype, stage)
        self._phase = phase
        self.core_s = core_s

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def decode(self) -> bool:
        return self._phase is Phase.DECODE

    def norm(self, name: str, elements: float, residual: bool = False) -> None:
        """RMSNorm over BF16 ``elements``; with ``residual`` the residual add is fused into it (read
        the sub-layer output and the residual, write the new residual and the normed output)."""
        self.emit(name, OpKind.NORM, Memory(elements * BF16 * (4.0 if residual else 2.0), NORM_ROPE))

    def memory(
        self,
        name: str,
        kind: OpKind,
        forward_bytes: float,
        backward_bytes: float | None = None,
        recompute: bool = False,
        family: str = "memory_bound",
        backward_name: str | None = None,
    ) -> None:
        self.emit(name, kind, Memory(max(0.0, float(forward_bytes)), family))

    def cast(self, name: str, elements: float) -> None:
        """Per-token (1x128) FP8 quantisation of a BF16 tensor before an FP8 GEMM or dispatch (V3-TR
        section 3.3): reads BF16, writes FP8 plus one FP32 scale per 128 values. None in BF16."""
        if self.fp8:
            self.emit(name, OpKind.FP8_CAST, Memory(elements * CAST_BYTES))

    def gemm(self, name: str, kind: OpKind, m: float, n: float, k: float, dtype: str, batch: int = 1) -> None:
        self.emit(
            name, kind, Gemm(max(1, int(m)), max(1, int(round(n))), max(1, int(round(k))), dtype, batch)
        )

    def linear(
        self,
        name: str,
        n: float,
        k: float,
        *,
        rows: float | None = None,
        cast: bool = True,
        recomputed: bool = False,
        kind: OpKind = OpKind.DENSE_GEMM,
        cast_name: str | None = None,
    ) -> None:
        """The FP8 cast of the input (named ``cast_name``; none when ``cast`` is False: the producer
        wrote it quantised) and the GEMM in the serving dtype."""
        m = self.tokens if rows is None else rows
        if cast and cast_name is not None:
            self.cast(cast_name, m * k)
        self.gemm(name, kind, m, n, k, self.gemm_dtype)

    def input_projections(
        self,
        projections: Sequence[tuple[str, float, bool]],
        k: float,
        cast_name: str,
        fused_name: str | None = None,
    ) -> None:
        """Projections reading the same input share one FP8 cast; with ``fused_name`` they run as one
        GEMM over their concatenated weights (MLA's q_a and kv_a: N = 1536 + 576 for V3, a DeepGEMM
        benchmark shape)."""
        self.cast(cast_name, self.tokens * k)
        if fused_name is not None:
            self.gemm(
                fused_name,
                OpKind.DENSE_GEMM,
                self.tokens,
                sum(n for _, n, _ in projections),
                k,
                self.gemm_dtype,
            )
            return
        for name, n, _ in projections:
            self.gemm(name, OpKind.DENSE_GEMM, self.tokens, n, k, self.gemm_dtype)

    def activation(self, name: str, rows: float, inter: float) -> None:
        """SwiGLU over [rows, 2 x inter] fused with the FP8 cast of its output for the down GEMM."""
        out = 1.0 + FP8_SCALE_BYTES_PER_VALUE if self.fp8 else BF16
        self.emit(name, OpKind.ACTIVATION, Memory(rows * inter * (2.0 * BF16 + out)))

    def core_attention(self) -> None:
        """The step's core attention kernel, its time summed over the requests by the caller."""
        self.emit("core_attention", OpKind.ATTENTION, Given(self.core_s))


def attention_work(
    batch: int,
    q_len: int,
    kv_len: int,
    heads: int,
    qk: int,
    v: int,
    causal: bool,
    dtype: str = "bf16",
    *,
    backward: bool = False,
    kv_bytes: float | None = None,
    scale: float = 1.0,
) -> Attention:
    return Attention(batch, q_len, kv_len, heads, qk, v, causal, dtype, backward, kv_bytes, scale)
