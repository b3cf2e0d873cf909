"""ONNX Runtime backend for the network's ``step`` on the CPU (``--backend onnx``).

Measured 1.4-1.7x faster than PyTorch for ``warp`` and ``lite`` on this project's CPU, with
outputs within 1e-5 (docs/PERFORMANCE.md, benchmarks/onnx_cpu.py). Shapes are fixed in an
exported graph, so ``step`` is exported once per input signature (block size, working size,
reference positions, first block or not) the first time it is met; that block runs in
PyTorch while the graph is exported (seconds for ``warp``, 20-40 s for ``lite`` here), later
ones in ONNX Runtime. The sessions are kept per model object for the life of the process, so
further videos colorized with the same model (a batch, the web app) export nothing. Needs ``pip install "refcolor[onnx]"``.
"""
from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
import weakref
from pathlib import Path

import torch
from torch import Tensor, nn

from .errors import RefcolorError

_SESSIONS: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


Layout = tuple[str, ...] | None  # a memory's parts: None = no memory, ("",) = one tensor, else dict keys


def flatten_memory(memory) -> tuple[Layout, list[Tensor]]:
    """The network's memory (None, the linkage tensor, or propagation's dict of tensors) as a layout
    and a list of plain tensors, so that it can be a graph's inputs and outputs."""
    if memory is None:
        return None, []
    if isinstance(memory, Tensor):
        return ("",), [memory]
    names = tuple(sorted(memory))
    return names, [memory[n] for n in names]


def unflatten_memory(layout: Layout, tensors) -> object:
    if layout is None:
        return None
    if layout == ("",):
        return tensors[0]
    return dict(zip(layout, tensors))


class _Step(nn.Module):
    """``model.step`` with plain tensor inputs and outputs (reference state and memory unpacked)."""

    def __init__(self, model: nn.Module, heads: int, memory_in: Layout, memory_out: Layout) -> None:
        super().__init__()
        self.model, self.heads = model, heads
        self.memory_in, self.memory_out = memory_in, memory_out

    def forward(self, l_block: Tensor, lab: Tensor, *tensors: Tensor):
        from .models.network import RefState

        keys, ab = list(tensors[: self.heads]), list(tensors[self.heads : 2 * self.heads])
        memory = unflatten_memory(self.memory_in, tensors[2 * self.heads :])
        out, memory = self.model.step(l_block, RefState(keys=keys, ab=ab, lab=lab), memory)
        return (out, *flatten_memory(memory)[1]) if self.memory_out is not None else out


@contextlib.contextmanager
def _sdpa_4d():
    """3-D ``scaled_dot_product_attention`` (the linkage memory's) as 4-D with one head: the
    same numbers, and the only form the dynamo exporter translates."""
    import torch.nn.functional as F

    original = F.scaled_dot_product_attention

    def four_d(q, k, v, *args, **kwargs):
        if q.dim() == 3:
            return original(q[:, None], k[:, None], v[:, None], *args, **kwargs)[:, 0]
        return original(q, k, v, *args, **kwargs)

    F.scaled_dot_product_attention = four_d
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


def default_exporter(model: nn.Module) -> str:
    """The TorchScript exporter for ``warp`` (seconds); the dynamo exporter for the presets, whose
    backbone resizes to a traced size, which the TorchScript exporter cannot export."""
    from .models.warp import WarpModel

    return "torchscript" if isinstance(model, WarpModel) else "dynamo"


def _input_names(heads: int, memory_in: Layout) -> list[str]:
    names = ["l_block", "lab", *[f"key{i}" for i in range(heads)], *[f"ab{i}" for i in range(heads)]]
    return names + [f"memory{n and '_' + n}" for n in (memory_in or ())]


def export_step(model: nn.Module, inputs: list[Tensor], heads: int, memory_in: Layout, memory_out: Layout,
                path: Path, exporter: str | None = None) -> None:
    """Writes ``model.step`` for these input shapes as an ONNX graph at ``path``; the memory read
    and returned are laid out as ``flatten_memory`` gives them."""
    names = _input_names(heads, memory_in)
    wrapper = _Step(model, heads, memory_in, memory_out).eval()
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes
        args = tuple(t.clone() for t in inputs)  # plain tensors, not inference tensors
        if (exporter or default_exporter(model)) == "torchscript":
            torch.onnx.export(wrapper, args, str(path), input_names=names, opset_version=17, dynamo=False)
        else:
            with _sdpa_4d(), contextlib.redirect_stdout(io.StringIO()):
                torch.onnx.export(wrapper, args, str(path), input_names=names, opset_version=18, dynamo=True,
                                  external_data=False, verbose=False)


class OnnxStep:
    """Callable like ``model.step(l_block, ref, memory) -> (ab, memory)``, run by ONNX Runtime."""

    def __init__(self, model: nn.Module, threads: int | None = None) -> None:
        try:
            import onnxruntime  # noqa: F401
            import onnx  # noqa: F401
        except ImportError:
            raise RefcolorError('--backend onnx needs ONNX Runtime: pip install "refcolor[onnx]" '
                                '(in a checkout: pip install -e ".[onnx]")') from None
        self.model = model
        self.threads = threads or torch.get_num_threads()
        self.sessions: dict[tuple, tuple] = _SESSIONS.setdefault(model, {})
        self._dir = tempfile.TemporaryDirectory(prefix="refcolor-onnx-")

    def _session(self, key: tuple, inputs: list[Tensor], heads: int, memory_in: Layout, memory_out: Layout):
        import onnxruntime as ort

        path = Path(self._dir.name) / f"step{len(self.sessions)}.onnx"
        export_step(self.model, inputs, heads, memory_in, memory_out, path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        path.unlink()  # the session holds the graph
        used = {i.name for i in session.get_inputs()}  # warp does not read the reference's lab
        self.sessions[key] = (session, [n in used for n in _input_names(heads, memory_in)], memory_out)
        return self.sessions[key]

    def __call__(self, l_block: Tensor, ref, memory):
        """memory: None, the linkage tensor or propagation's dict, as ``model.step`` takes it."""
        heads = len(ref.keys)
        memory_in, memory_tensors = flatten_memory(memory)
        inputs = [l_block, ref.lab, *ref.keys, *ref.ab, *memory_tensors]
        key = tuple(tuple(t.shape) for t in inputs) + (memory_in, self.threads)
        if key not in self.sessions:
            ab, new_memory = self.model.step(l_block, ref, memory)  # this block in PyTorch
            self._session(key, inputs, heads, memory_in, flatten_memory(new_memory)[0])
            return ab, new_memory
        session, used, memory_out = self.sessions[key]
        names = [i.name for i in session.get_inputs()]
        arrays = [t.detach().cpu().numpy() for t, u in zip(inputs, used) if u]
        outputs = session.run(None, dict(zip(names, arrays)))
        ab = torch.from_numpy(outputs[0])
        if memory_out is None:
            return ab, memory
        return ab, unflatten_memory(memory_out, [torch.from_numpy(o) for o in outputs[1:]])
