"""The search space: a CNN backbone family with a TCL (or TRL) head, and the network builder.

An *architecture* is a JSON-able dict; :func:`build_network` builds it, so a found model is saved as the spec
``{"builder": "tensorslim.search.space:build_network", "kwargs": ARCH}``::

    {"input_shape": [1, 28, 28], "num_classes": 10,
     "stem": {"width": 16, "stride": 1},                       # 3×3 conv+BN+ReLU (stride 4: s2 conv, 2×2 max pool)
     "stages": [{"block": "mbconv", "depth": 2, "width": 24,   # block: "conv" (k×k conv+BN+ReLU) or "mbconv"
                 "kernel": 3, "expansion": 3, "stride": 2},     # (1×1 expand ×t → k×k depthwise → 1×1 project)
                ...],
     "pool_to": null,                                          # adaptive average pool to this size before the head
     "head": {"kind": "tcl", "rank": [8, 4, 4], "bn": "before"}}   # TCL (→ flatten → Linear) or
                                                                   # {"kind": "trl", "rank": [R_C, R_H, R_W, R_O]}

A :class:`SearchSpace` lists the choices; :meth:`SearchSpace.suggest` turns the decisions of an Optuna trial
(or anything with ``suggest_categorical`` / ``suggest_int``) into an architecture. The stride of a stage is a
decision that is *repaired*: a stage that would shrink the map below ``min_head_hw`` keeps stride 1, so every
sampled architecture is valid. TCL ranks are either fixed fractions of the head's input dimensions
(``rank_mode="fixed"``) or decisions of the same search (``rank_mode="auto"``, one fraction per mode out of
``rank_fractions``); ranks are stored absolute in the architecture.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from ..cost import profile
from ..errors import TensorSlimError
from ..layers import TRL, TCLHead

BUILDER = "tensorslim.search.space:build_network"
BLOCKS = ("conv", "mbconv")
HEADS = ("tcl", "trl")
RANK_MODES = ("auto", "fixed")


class SearchSpaceError(TensorSlimError):
    """A search space, architecture or rank setting that cannot be used."""


# ------------------------------------------------------------------------------------------------ modules


def _conv_bn_act(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> list:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return layers


class ConvBlock(nn.Sequential):
    """Plain block: ``k×k`` conv (stride) + BN + ReLU6."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int):
        super().__init__(*_conv_bn_act(cin, cout, kernel, stride))


class MBConv(nn.Module):
    """Inverted residual: ``1×1`` expand (×t, absent when t = 1) → ``k×k`` depthwise (stride) → ``1×1`` linear
    projection, each with BN; identity shortcut when the stride is 1 and the channels match."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        hidden = cin * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += _conv_bn_act(cin, hidden, 1)
        layers += _conv_bn_act(hidden, hidden, kernel, stride, groups=hidden)
        layers += _conv_bn_act(hidden, cout, 1, act=False)
        self.body = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        out = self.body(x)
        return x + out if self.use_residual else out


class SearchNet(nn.Module):
    """``features`` (stem, stages, optional pooling) then ``head`` (:class:`~tensorslim.layers.TCLHead` or
    :class:`~tensorslim.layers.TRL`) on the ``(C, H, W)`` feature map."""

    def __init__(self, features: nn.Sequential, head: nn.Module):
        super().__init__()
        self.features = features
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def _conv_out(size: int, stride: int, kernel: int = 3) -> int:
    """Output size of a conv with padding ``kernel // 2``."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def stem_out(size: int, stride: int) -> int:
    """Spatial size after the stem: a 3×3 conv of stride 1 or 2; stride 4 = stride-2 conv then 2×2 max pool."""
    if stride == 4:
        return _conv_out(size, 2) // 2
    return _conv_out(size, stride)


def feature_shape(arch: dict[str, Any]) -> tuple[int, int, int]:
    """``(C, H, W)`` of the map that reaches the head (analytic, no forward pass)."""
    _, h, w = arch["input_shape"]
    s = arch["stem"]["stride"]
    h, w = stem_out(h, s), stem_out(w, s)
    c = arch["stem"]["width"]
    for st in arch["stages"]:
        for i in range(st["depth"]):
            stride = st["stride"] if i == 0 else 1
            h, w = _conv_out(h, stride, st["kernel"]), _conv_out(w, stride, st["kernel"])
        c = st["width"]
    if arch.get("pool_to"):
        h, w = min(h, arch["pool_to"]), min(w, arch["pool_to"])
    return c, h, w


def _check_arch(arch: dict[str, Any]) -> None:
    try:
        shape = [int(v) for v in arch["input_shape"]]
        if len(shape) != 3 or min(shape) < 1:
            raise SearchSpaceError(f"architecture: input_shape must be [C, H, W] of positive sizes, got {shape}")
        if int(arch["num_classes"]) < 1:
            raise SearchSpaceError(f"architecture: num_classes must be >= 1, got {arch['num_classes']}")
        if arch["stem"]["stride"] not in (1, 2, 4):
            raise SearchSpaceError(f"architecture: stem stride must be 1, 2 or 4, got {arch['stem']['stride']}")
        if not arch["stages"]:
            raise SearchSpaceError("architecture: at least one stage is needed")
        for i, st in enumerate(arch["stages"]):
            if st["block"] not in BLOCKS:
                raise SearchSpaceError(f"architecture: stage {i} block must be one of {list(BLOCKS)}, "
                                       f"got {st['block']!r}")
            if st["kernel"] % 2 == 0 or st["depth"] < 1 or st["width"] < 1 or st["stride"] not in (1, 2):
                raise SearchSpaceError(f"architecture: stage {i} needs an odd kernel, depth >= 1, width >= 1 and "
                                       f"stride 1 or 2, got {st}")
        if arch["head"]["kind"] not in HEADS:
            raise SearchSpaceError(f"architecture: head kind must be one of {list(HEADS)}, "
                                   f"got {arch['head']['kind']!r}")
    except (KeyError, TypeError) as err:
        raise SearchSpaceError(f"architecture: missing or malformed entry {err}") from None
    c, h, w = feature_shape(arch)
    if h < 1 or w < 1:
        raise SearchSpaceError(f"architecture: the feature map vanishes ({c}×{h}×{w}) for input {shape}")


def build_network(input_shape: Sequence[int], num_classes: int, stem: dict[str, Any], stages: list[dict[str, Any]],
                  head: dict[str, Any], pool_to: int | None = None, **_info: Any) -> SearchNet:
    """Build an architecture dict (see the module docstring). Extra keys (``rank_fractions``...) are ignored."""
    arch = {"input_shape": list(input_shape), "num_classes": num_classes, "stem": stem, "stages": stages,
            "head": head, "pool_to": pool_to}
    _check_arch(arch)
    layers: list[tuple[str, nn.Module]] = []
    cin = int(input_shape[0])
    s = stem["stride"]
    stem_layers = _conv_bn_act(cin, stem["width"], 3, min(s, 2))
    if s == 4:
        stem_layers.append(nn.MaxPool2d(2))
    layers.append(("stem", nn.Sequential(*stem_layers)))
    cin = stem["width"]
    for i, st in enumerate(stages):
        blocks = []
        for j in range(st["depth"]):
            stride = st["stride"] if j == 0 else 1
            if st["block"] == "conv":
                blocks.append(ConvBlock(cin, st["width"], st["kernel"], stride))
            else:
                blocks.append(MBConv(cin, st["width"], st["kernel"], stride, st.get("expansion", 1)))
            cin = st["width"]
        layers.append((f"stage{i}", nn.Sequential(*blocks)))
    if pool_to:
        layers.append(("pool", nn.AdaptiveAvgPool2d(int(pool_to))))
    chw = feature_shape(arch)
    rank = [int(r) for r in head["rank"]]
    try:
        if head["kind"] == "tcl":
            head_mod: nn.Module = TCLHead(chw, num_classes, rank, bias=True, bn=head.get("bn", "before"))
        else:
            head_mod = TRL(chw, num_classes, rank, kind="tucker", bias=True)
    except TensorSlimError as err:
        raise SearchSpaceError(f"architecture head on a {list(chw)} map: {err}") from None
    return SearchNet(nn.Sequential(OrderedDict(layers)), head_mod)


# ------------------------------------------------------------------------------------------------ space


def _ints(values: Any, what: str, low: int = 1) -> list[int]:
    try:
        out = [int(v) for v in values]
    except (TypeError, ValueError):
        raise SearchSpaceError(f"search space: {what} must be a list of integers, got {values!r}") from None
    if not out or min(out) < low or any(float(v) != o for v, o in zip(values, out)):
        raise SearchSpaceError(f"search space: {what} must be a non-empty list of integers >= {low}, got {values!r}")
    return sorted(set(out))


@dataclasses.dataclass
class SearchSpace:
    """Choices of the backbone family and the head. JSON-able via :meth:`to_dict` / :meth:`from_dict`.

    ``widths[i]`` are the width choices of stage ``i`` (its length is the most stages); ``stages`` the allowed
    numbers of stages. ``downsample``: stride choices of each stage (repaired, see the module docstring).
    ``head_hw_max``: a larger final map is average-pooled to this size before the head. ``rank_fractions``:
    the per-mode TCL rank choices in automatic mode (fraction of each head input dimension).
    ``max_params`` / ``max_macs``: architectures above them are pruned before any training.
    """

    input_shape: tuple[int, int, int]
    num_classes: int
    stages: list[int] = dataclasses.field(default_factory=lambda: [2, 3])
    depths: list[int] = dataclasses.field(default_factory=lambda: [1, 2])
    widths: list[list[int]] = dataclasses.field(
        default_factory=lambda: [[8, 16, 24], [16, 24, 32, 48], [32, 48, 64, 96], [64, 96, 128]])
    stem_widths: list[int] = dataclasses.field(default_factory=lambda: [8, 16])
    stem_strides: list[int] = dataclasses.field(default_factory=lambda: [1])
    blocks: list[str] = dataclasses.field(default_factory=lambda: list(BLOCKS))
    kernels: list[int] = dataclasses.field(default_factory=lambda: [3, 5])
    expansions: list[int] = dataclasses.field(default_factory=lambda: [1, 3, 6])
    downsample: list[int] = dataclasses.field(default_factory=lambda: [1, 2])
    heads: list[str] = dataclasses.field(default_factory=lambda: ["tcl"])
    tcl_bn: str = "before"
    rank_fractions: list[float] = dataclasses.field(default_factory=lambda: [0.25, 0.5, 0.75, 1.0])
    min_head_hw: int = 2
    head_hw_max: int = 7
    max_params: int | None = None
    max_macs: int | None = None

    def __post_init__(self) -> None:
        self.validate()

    # -- validation ----------------------------------------------------------------------------------------
    def validate(self) -> None:
        shape = _ints(self.input_shape, "input_shape")
        if len(shape) != 3 and len(list(self.input_shape)) != 3:
            raise SearchSpaceError(f"search space: input_shape must be (C, H, W), got {self.input_shape!r}")
        self.input_shape = tuple(int(v) for v in self.input_shape)  # type: ignore[assignment]
        if int(self.num_classes) < 1:
            raise SearchSpaceError(f"search space: num_classes must be >= 1, got {self.num_classes}")
        self.stages = _ints(self.stages, "stages")
        self.depths = _ints(self.depths, "depths")
        if not isinstance(self.widths, (list, tuple)) or not self.widths:
            raise SearchSpaceError("search space: widths must be a list (one list of choices per stage)")
        self.widths = [_ints(w, f"widths[{i}]") for i, w in enumerate(self.widths)]
        if max(self.stages) > len(self.widths):
            raise SearchSpaceError(f"search space: up to {max(self.stages)} stages but width choices for only "
                                   f"{len(self.widths)}")
        self.stem_widths = _ints(self.stem_widths, "stem_widths")
        self.stem_strides = _ints(self.stem_strides, "stem_strides")
        if set(self.stem_strides) - {1, 2, 4}:
            raise SearchSpaceError(f"search space: stem_strides must be among 1, 2, 4, got {self.stem_strides}")
        self.kernels = _ints(self.kernels, "kernels")
        if any(k % 2 == 0 for k in self.kernels):
            raise SearchSpaceError(f"search space: kernels must be odd, got {self.kernels}")
        self.expansions = _ints(self.expansions, "expansions")
        self.downsample = _ints(self.downsample, "downsample")
        if set(self.downsample) - {1, 2}:
            raise SearchSpaceError(f"search space: downsample strides must be 1 or 2, got {self.downsample}")
        self.blocks = list(self.blocks)
        if not self.blocks or set(self.blocks) - set(BLOCKS):
            raise SearchSpaceError(f"search space: blocks must be among {list(BLOCKS)}, got {self.blocks}")
        self.heads = list(self.heads)
        if not self.heads or set(self.heads) - set(HEADS):
            raise SearchSpaceError(f"search space: heads must be among {list(HEADS)}, got {self.heads}")
        if self.tcl_bn not in ("none", "before", "after"):
            raise SearchSpaceError(f"search space: tcl_bn must be none, before or after, got {self.tcl_bn!r}")
        try:
            self.rank_fractions = sorted({float(f) for f in self.rank_fractions})
        except (TypeError, ValueError):
            raise SearchSpaceError(f"search space: rank_fractions must be numbers, "
                                   f"got {self.rank_fractions!r}") from None
        if not self.rank_fractions or not all(0 < f <= 1 for f in self.rank_fractions):
            raise SearchSpaceError(f"search space: rank_fractions must be in (0, 1], got {self.rank_fractions}")
        if self.min_head_hw < 1 or self.head_hw_max < self.min_head_hw:
            raise SearchSpaceError(f"search space: need 1 <= min_head_hw <= head_hw_max, got "
                                   f"{self.min_head_hw}, {self.head_hw_max}")
        # Is there any valid architecture? The largest final map comes from the smallest stem stride and no
        # stage downsampling (repair only ever removes downsampling).
        _, h, w = self.input_shape
        best = max(min(stem_out(h, s), stem_out(w, s)) for s in self.stem_strides)
        if best < self.min_head_hw:
            raise SearchSpaceError(
                f"search space has no valid architecture for input {list(self.input_shape)}: the stem (strides "
                f"{self.stem_strides}) leaves at most a {best}×{best} map, the head needs >= {self.min_head_hw}")

    # -- (de)serialisation -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSpace:
        if not isinstance(data, dict):
            raise SearchSpaceError(f"search space must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise SearchSpaceError(f"search space: unknown key(s) {', '.join(sorted(unknown))}; known: "
                                   f"{', '.join(sorted(known))}")
        missing = {"input_shape", "num_classes"} - set(data)
        if missing:
            raise SearchSpaceError(f"search space: missing {', '.join(sorted(missing))}")
        return cls(**data)

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    # -- sampling --------------------------------------------------------------------------------------------
    def suggest(self, trial: Any, rank_mode: str = "auto", fixed_ranks: Sequence[float] | None = None
                ) -> dict[str, Any]:
        """Architecture from a trial's decisions. Parameter names are fixed (``s{i}_*`` for stage ``i``);
        stage parameters beyond the chosen number of stages are not asked."""
        check_rank_mode(rank_mode, fixed_ranks)
        n_stages = trial.suggest_categorical("n_stages", self.stages)
        stem_stride = trial.suggest_categorical("stem_stride", self.stem_strides)
        stem = {"width": trial.suggest_categorical("stem_width", self.stem_widths), "stride": stem_stride}
        _, h, w = self.input_shape
        size = min(stem_out(h, stem_stride), stem_out(w, stem_stride))
        stages = []
        for i in range(n_stages):
            block = trial.suggest_categorical(f"s{i}_block", self.blocks)
            kernel = trial.suggest_categorical(f"s{i}_kernel", self.kernels)
            stride = trial.suggest_categorical(f"s{i}_stride", self.downsample)
            if stride == 2 and _conv_out(size, 2, kernel) < self.min_head_hw:
                stride = 1  # repair: keep the head's map at least min_head_hw wide
            size = _conv_out(size, stride, kernel)
            stage = {"block": block, "depth": trial.suggest_categorical(f"s{i}_depth", self.depths),
                     "width": trial.suggest_categorical(f"s{i}_width", self.widths[i]), "kernel": kernel,
                     "expansion": 1, "stride": stride}
            if block == "mbconv":
                stage["expansion"] = trial.suggest_categorical(f"s{i}_expansion", self.expansions)
            stages.append(stage)
        arch: dict[str, Any] = {"input_shape": list(self.input_shape), "num_classes": self.num_classes,
                                "stem": stem, "stages": stages,
                                "pool_to": self.head_hw_max if size > self.head_hw_max else None}
        kind = trial.suggest_categorical("head", self.heads)
        chw = feature_shape({**arch, "head": {"kind": kind}})
        if rank_mode == "auto":
            fractions = [trial.suggest_categorical(f"rank_{m}", self.rank_fractions) for m in "chw"]
            if kind == "trl":
                fractions.append(trial.suggest_categorical("rank_o", self.rank_fractions))
        else:
            fractions = list(fixed_ranks)  # type: ignore[arg-type]
            if kind == "trl" and len(fractions) == 3:
                fractions.append(1.0)
        arch["head"] = head_from_fractions(kind, chw, self.num_classes, fractions, self.tcl_bn)
        return arch

    def max_architecture(self) -> dict[str, Any]:
        """The costliest corner (most stages and blocks, widest, largest kernel and expansion, full ranks):
        used as the reference point for hypervolumes."""
        fixed = _Fixed({"n_stages": max(self.stages), "stem_stride": min(self.stem_strides),
                        "stem_width": max(self.stem_widths), "head": self.heads[0]},
                       {"block": "mbconv" if "mbconv" in self.blocks else "conv", "kernel": max(self.kernels),
                        "stride": min(self.downsample), "depth": max(self.depths), "expansion": max(self.expansions),
                        "rank": 1.0}, self.widths)
        return self.suggest(fixed, "auto")


class _Fixed:
    """A trial stand-in answering with fixed choices (for :meth:`SearchSpace.max_architecture`)."""

    def __init__(self, top: dict[str, Any], per_stage: dict[str, Any], widths: list[list[int]]):
        self.top, self.per_stage, self.widths = top, per_stage, widths

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        if name in self.top:
            return self.top[name]
        if name.startswith("rank_"):
            return max(choices)
        i, key = name[1:].split("_", 1)
        if key == "width":
            return max(self.widths[int(i)])
        value = self.per_stage[key]
        return value if value in choices else choices[0]


def check_rank_mode(rank_mode: str, fixed_ranks: Sequence[float] | None) -> None:
    if rank_mode not in RANK_MODES:
        raise SearchSpaceError(f"rank_mode must be one of {list(RANK_MODES)}, got {rank_mode!r}")
    if rank_mode == "fixed":
        if fixed_ranks is None:
            raise SearchSpaceError("rank_mode 'fixed' needs fixed_ranks (fractions for the C, H, W modes)")
        try:
            ok = len(fixed_ranks) in (3, 4) and all(0 < float(f) <= 1 for f in fixed_ranks)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise SearchSpaceError(f"fixed_ranks must be 3 (or 4 for a TRL) fractions in (0, 1], got {fixed_ranks!r}")


def head_from_fractions(kind: str, chw: Sequence[int], num_classes: int, fractions: Sequence[float],
                        bn: str = "before") -> dict[str, Any]:
    """Head entry with absolute ranks ``clamp(round(f·D), 1, D)`` (the TRL output rank against ``num_classes``)."""
    dims = [*chw, num_classes] if kind == "trl" else list(chw)
    rank = [max(1, min(d, round(float(f) * d))) for f, d in zip(fractions, dims)]
    head: dict[str, Any] = {"kind": kind, "rank": rank, "fractions": [float(f) for f in fractions[:len(dims)]]}
    if kind == "tcl":
        head["bn"] = bn
    return head


def default_space(input_shape: Sequence[int], num_classes: int, **overrides: Any) -> SearchSpace:
    """A space sized for the input: 28/32 px keep full resolution in the stem; 64-160 px inputs get a stem of
    stride 2 or 4 and up to four stages, the head map being pooled to at most 4×4."""
    h = min(int(input_shape[1]), int(input_shape[2]))
    base: dict[str, Any] = {}
    if h > 48:
        base = {"stem_strides": [2, 4], "stages": [3, 4], "head_hw_max": 4,
                "widths": [[16, 24, 32], [24, 32, 48], [48, 64, 96], [96, 128, 160]]}
    base.update(overrides)
    return SearchSpace(input_shape=tuple(int(v) for v in input_shape), num_classes=int(num_classes), **base)


def arch_summary(arch: dict[str, Any]) -> str:
    """One line: ``stem16/s1 | mb3x2 24 k3 s2 | conv1 48 k5 s2 | tcl[8,4,4]``."""
    parts = [f"stem{arch['stem']['width']}/s{arch['stem']['stride']}"]
    for st in arch["stages"]:
        b = f"mb{st['expansion']}" if st["block"] == "mbconv" else "conv"
        parts.append(f"{b}x{st['depth']} {st['width']} k{st['kernel']} s{st['stride']}")
    if arch.get("pool_to"):
        parts.append(f"pool{arch['pool_to']}")
    parts.append(f"{arch['head']['kind']}{arch['head']['rank']}")
    return " | ".join(parts)


def spec(arch: dict[str, Any]) -> dict[str, Any]:
    """The model-directory build spec of an architecture."""
    return {"builder": BUILDER, "kwargs": json.loads(json.dumps(arch))}


def count(arch: dict[str, Any]) -> tuple[int, int]:
    """``(params, MACs)`` of an architecture from :func:`tensorslim.cost.profile` (batch 1)."""
    total = profile(build_network(**arch), arch["input_shape"]).total
    return int(total.params), int(total.macs)
