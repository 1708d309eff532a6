"""The operators a module runs at inference, recorded at PyTorch's dispatcher.

`operator_graph(module, input_shape)` runs one eval-mode forward pass of one sample under a
`TorchDispatchMode` (the mechanism `torch.utils.flop_counter.FlopCounterMode` is built on) and
records every ATen operator that actually executes: its kind, its MACs (from
`torch.utils.flop_counter`'s own formulas, FLOPs / 2), its non-MAC element operations, and the
elements it reads and writes, split into activations and weights (parameters and buffers).

Why the dispatcher and not torch.fx or module hooks: an FX symbolic trace fails on data-dependent
Python control flow and sees functional calls only as graph nodes, and leaf-module hooks miss
everything written in a `forward` (`x + y`, `x.mul(0)`, `torch.cat`); at the dispatcher every
operator that runs is seen once, with real shapes, whatever the module's code looks like, and any
`nn.Module` works. What does not run costs nothing by construction: `nn.Identity` and eval-mode
`nn.Dropout` dispatch no operator; views (`view`, `flatten`, `t`, `expand`, ...) are recognised by
their schema (the output aliases an input without writing it) and recorded as free.

The graph also records which tensor each operator consumed, so runtimes that fold batch-norm into
the preceding convolution, or fuse an activation into it, can drop those operators
(`OperatorGraph.deployed(...)`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from nas.energy.opkinds import (
    ACTIVATION_OPS,
    ALLOCATIONS,
    BATCH_NORM,
    COPY,
    ELEMENTWISE,
    FOLDABLE_NORMS,
    FUSABLE_ACTIVATIONS,
    MAC_KINDS,
    POOL,
    is_view,
    pool_window,
    tensors,
)


@dataclass(frozen=True)
class Operator:
    """One operator call at inference, for one input sample (batch 1).

    `kind`: conv | matmul | batch_norm | pool | activation | elementwise | copy | other | view |
    empty (an operator over zero elements, e.g. an idle mixture-of-experts expert given no rows:
    no arithmetic, no output written, so no weight read either; counted as free like a view).
    `macs`: multiply-accumulates (torch.utils.flop_counter's FLOPs / 2; 0 for non-MAC operators).
    `element_ops`: non-MAC arithmetic, in operations on single elements (e.g. a 3x3 average pool:
    9 per output element). `activation_elems`: elements read and written that scale with the
    batch (inputs other than weights, plus outputs). `weight_elems`: parameter and buffer
    elements read (once per batch). `inputs`/`output`: tensor ids within the graph, for fusion.
    """

    name: str
    kind: str
    macs: int = 0
    element_ops: int = 0
    activation_elems: int = 0
    weight_elems: int = 0
    inputs: tuple[int, ...] = ()
    output: int = -1

    @property
    def free(self) -> bool:
        """Views and operators over zero elements cost nothing: no arithmetic, no data moved."""
        return self.kind in ("view", "empty")


@dataclass(frozen=True)
class OperatorGraph:
    """The operators of one forward pass of one sample, in execution order.

    `weight_elems_total`: all parameter and buffer elements of the module (what stays resident
    between inferences, or not); `input_elems`: elements of one input sample.
    """

    operators: tuple[Operator, ...]
    weight_elems_total: int
    input_elems: int

    @property
    def macs(self) -> int:
        """All multiply-accumulates of the pass (one sample)."""
        return sum(op.macs for op in self.operators)

    def calls(self) -> tuple[Operator, ...]:
        """The operators that run (views excluded)."""
        return tuple(op for op in self.operators if not op.free)

    def deployed(self, folds_batch_norm: bool, fuses_activation: bool) -> OperatorGraph:
        """The graph as a runtime runs it: with `folds_batch_norm`, a batch-norm whose input is a
        convolution's output used by nothing else disappears (its scale and shift go into the
        convolution's weights and bias); with `fuses_activation`, likewise an activation right after
        a convolution or matrix product (after any folded batch-norm), as ONNX Runtime's
        Conv/Gemm-activation fusions do. Views are dropped in both cases."""
        consumers: dict[int, int] = {}
        for op in self.operators:
            for t in set(op.inputs):
                consumers[t] = consumers.get(t, 0) + 1
        producer_kind: dict[int, str] = {}
        # a tensor id -> the id it stands for once fused/folded operators are dropped
        alias: dict[int, int] = {}
        kept: list[Operator] = []
        for op in self.operators:
            ins = tuple(alias.get(t, t) for t in op.inputs)
            act_inputs = [t for t in op.inputs if t >= 0]
            src = act_inputs[0] if act_inputs else None
            src_kind = producer_kind.get(alias.get(src, src)) if src is not None else None
            single_use = src is not None and consumers.get(src, 0) == 1
            if op.free:
                if src is not None:
                    alias[op.output] = alias.get(src, src)
                continue
            if (
                folds_batch_norm
                and op.kind == "batch_norm"
                and op.name in FOLDABLE_NORMS
                and src_kind == "conv"
                and single_use
            ):
                alias[op.output] = alias.get(src, src)
                continue
            if (
                fuses_activation
                and op.kind == "activation"
                and op.name in FUSABLE_ACTIVATIONS
                and src_kind in ("conv", "matmul")
                and single_use
            ):
                alias[op.output] = alias.get(src, src)
                continue
            kept.append(replace(op, inputs=ins))
            producer_kind[op.output] = op.kind
        return OperatorGraph(tuple(kept), self.weight_elems_total, self.input_elems)


class _Recorder(TorchDispatchMode):
    def __init__(self, weights: set[int]) -> None:
        super().__init__()
        self.weights = weights  # id() of every parameter and buffer tensor passed in
        self.ops: list[Operator] = []
        self.ids: dict[int, int] = {}  # id(tensor) -> graph tensor id
        self.keep: list[torch.Tensor] = []  # keeps recorded tensors alive so ids stay unique
        self.next_id = 0

    def fresh(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def _tid(self, t: torch.Tensor) -> int:
        key = id(t)
        if key not in self.ids:
            self.ids[key] = self.fresh()
            self.keep.append(t)
        return self.ids[key]

    def _is_weight(self, t: torch.Tensor) -> bool:
        return id(t) in self.weights or (t._base is not None and id(t._base) in self.weights)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: D105
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func._overloadpacket.__name__
        flat_in = tensors(args) + tensors(tuple(kwargs.values()))
        flat_out = tensors(out if isinstance(out, (tuple, list)) else (out,))
        if not flat_out or name in ALLOCATIONS:
            return out
        first = flat_out[0]
        acts = [t for t in flat_in if not self._is_weight(t)]
        weights = [t for t in flat_in if self._is_weight(t)]
        inputs = tuple(self._tid(t) for t in acts)
        # a view's output shares its input's data; record it, costing nothing
        output = self._tid(first)
        if is_view(func):
            self.ops.append(Operator(name, "view", inputs=inputs, output=output))
            return out
        macs = 0
        packet = func._overloadpacket
        if packet in flop_registry:
            try:
                macs = int(flop_registry[packet](*args, **kwargs, out_val=out)) // 2
            except Exception:  # a formula that cannot handle these arguments: counted as 0 MACs
                macs = 0
        out_elems = sum(int(o.numel()) for o in flat_out[:1])
        if out_elems == 0:  # nothing computed (zero rows): no weights need reading
            self.ops.append(Operator(name, "empty", inputs=inputs, output=output))
            return out
        act_elems = sum(int(t.numel()) for t in acts if t.dim() > 0) + out_elems
        weight_elems = sum(int(t.numel()) for t in weights)
        if name in MAC_KINDS or macs > 0:
            kind, element_ops = MAC_KINDS.get(name, "matmul"), 0
        elif name in BATCH_NORM:
            kind, element_ops = "batch_norm", 2 * out_elems  # scale and shift per element
        elif name in POOL:
            kind, element_ops = "pool", pool_window(name, args, first, acts[0] if acts else None)
        elif name in ACTIVATION_OPS:
            kind, element_ops = "activation", ACTIVATION_OPS[name] * out_elems
        elif name in ELEMENTWISE:
            kind, element_ops = "elementwise", out_elems
        elif name in COPY:
            kind, element_ops = "copy", 0
        else:
            kind, element_ops = "other", out_elems
        self.ops.append(Operator(name, kind, macs, element_ops, act_elems, weight_elems, inputs, output))
        return out


def summary_graph(params: int, macs: int, activation_elems: int, input_elems: int) -> OperatorGraph:
    """A one-operator stand-in built from totals alone (for counts recorded without a graph): one
    call doing all `macs`, reading the input and all weights and writing `activation_elems`."""
    op = Operator("summary", "matmul", int(macs), 0, int(activation_elems + input_elems), int(params), (0,), 1)
    return OperatorGraph((op,), int(params), int(input_elems))


_Memo = dict[tuple[Any, ...], tuple[list[Operator], int, int, torch.Size, torch.dtype]]


class GraphRecorder:
    """Records the operators run inside `with recorder:` (e.g. alongside FlopCounterMode); `graph()`
    then returns them. `weights`: the module's parameters and buffers (what is not activation).

    With `module`, submodules whose class sets `graph_memo = True` (a promise that their forward
    takes one tensor, returns one, and runs the same operators whenever their `repr` and the input's
    shape are the same) are recorded once per (repr, input shape) and replayed after that, without
    running them: a network of 15 identical cells records one cell per stage. `memo` may be shared
    between recordings (`nas.measurements.GraphCache` shares it across networks).
    """

    def __init__(
        self, weights: Iterable[torch.Tensor], module: nn.Module | None = None, memo: _Memo | None = None
    ) -> None:
        tensors = list(weights)
        self._mode = _Recorder({id(t) for t in tensors})
        self._weight_total = sum(int(t.numel()) for t in tensors if t.is_floating_point())
        self._module = module
        self._memo: _Memo = {} if memo is None else memo
        self._patched: list[nn.Module] = []
        # recorded with autograd dispatch on even inside torch.inference_mode (a measurement's
        # forward): there a composite operator reaches the mode whole (aten.linear, not t + addmm),
        # which flop_counter's formulas do not know (0 MACs) and whose weight views go unrecognised
        self._normal = torch.inference_mode(False)
        self._no_grad = torch.no_grad()

    def __enter__(self) -> GraphRecorder:
        if self._module is not None:
            for m in self._module.modules():
                if type(m).__dict__.get("graph_memo", False) or any(
                    c.__dict__.get("graph_memo", False) for c in type(m).__mro__
                ):
                    m.forward = self._memoized(m, m.forward)  # an instance attribute, removed on exit
                    self._patched.append(m)
        self._normal.__enter__()
        self._no_grad.__enter__()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._mode.__exit__(*exc)
        self._no_grad.__exit__(*exc)
        self._normal.__exit__(*exc)
        for m in self._patched:
            del m.forward
        self._patched.clear()

    def _memoized(self, module: nn.Module, forward: Any) -> Any:
        rec = self._mode

        def run(x: torch.Tensor) -> torch.Tensor:
            key = (type(module).__qualname__, repr(module), tuple(x.shape), x.dtype)
            hit = self._memo.get(key)
            if hit is None:
                start, x_id = len(rec.ops), rec._tid(x)
                out = forward(x)
                self._memo[key] = (rec.ops[start:], x_id, rec._tid(out), out.shape, out.dtype)
                return out
            ops, x_id, out_id, shape, dtype = hit
            with torch.utils._python_dispatch._disable_current_modes():
                out = torch.zeros(shape, dtype=dtype, device=x.device)
            ids = {x_id: rec._tid(x), out_id: rec._tid(out)}
            for op in ops:
                rec.ops.append(
                    replace(
                        op,
                        inputs=tuple(ids.setdefault(t, rec.fresh()) for t in op.inputs),
                        output=ids.setdefault(op.output, rec.fresh()),
                    )
                )
            return out

        return run

    def graph(self, input_elems: int) -> OperatorGraph:
        """The recorded operators, for an input of `input_elems` elements per sample."""
        return OperatorGraph(tuple(self._mode.ops), self._weight_total, int(input_elems))


def operator_graph(
    module: nn.Module, input_shape: Iterable[int], dtype: torch.dtype = torch.float32, memo: _Memo | None = None
) -> OperatorGraph:
    """Record the operators `module` runs in eval mode on one zero input of shape `input_shape` (one
    sample, no batch dimension; e.g. (3, 32, 32)), on the module's own device. The module's
    training flag is restored afterwards; its weights and buffers are not changed (no_grad, eval).

    `memo`: recordings of `graph_memo` submodules to reuse (see GraphRecorder). Raises whatever
    the module's own forward raises on such an input.
    """
    shape = tuple(int(s) for s in input_shape)
    weights = [*module.parameters(), *module.buffers()]
    device = weights[0].device if weights else torch.device("cpu")
    with torch.inference_mode(False):  # a normal tensor even when called inside inference_mode
        x = torch.zeros((1, *shape), dtype=dtype, device=device)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), GraphRecorder(weights, module, memo) as recorder:
            module(x)
    finally:
        module.train(was_training)
    return recorder.graph(int(x.numel()))


__all__ = ["GraphRecorder", "Operator", "OperatorGraph", "operator_graph", "summary_graph"]
