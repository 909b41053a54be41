"""The graph of a model at one stage of the pipeline: ``traced``, ``inferred`` or ``optimized``.

``inferred`` runs ``infer_shapes`` and ``materialize_lazy`` (what ``lf.infer_shapes`` runs);
``optimized`` runs the ``cpu`` backend's pipeline (which ends with ``fuse``).  The traced graph is
kept too, so that callers can mark the dims inference resolved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lazyfuse.frontends.nn import Module
from lazyfuse.frontends.spec import TensorSpec
from lazyfuse.ir.graph import Graph

__all__ = ["STAGES", "StageResult", "stage_passes", "build_stage"]

STAGES = ("traced", "inferred", "optimized")


def stage_passes(stage: str, backend: str = "cpu") -> list[str]:
    """The passes run after tracing to reach ``stage``."""
    if stage == "traced":
        return []
    from lazyfuse.api import INFER_PASSES, pipeline

    if stage == "inferred":
        return list(INFER_PASSES)
    if stage == "optimized":
        from lazyfuse.backends import get_backend

        return pipeline(get_backend(backend))
    raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")


@dataclass
class StageResult:
    """The traced graph, the graph at ``stage``, and the backend source when asked for."""

    stage: str
    traced: Graph
    graph: Graph
    passes: list[str]
    source: str | None = None


def build_stage(model: Module, specs: Sequence[TensorSpec], stage: str = "inferred",
                print_after: set[str] | str = frozenset(), backend_source: bool | str = False) -> StageResult:
    """Trace ``model`` on ``specs`` and run the passes up to ``stage`` (printing after some);
    ``backend_source`` (True: ``"cpu"``, or ``"cuda"``) also generates that backend's code."""
    from lazyfuse.api import compile as lf_compile
    from lazyfuse.frontends.trace import trace
    from lazyfuse.passes.manager import PassContext, run_passes

    passes = stage_passes(stage)
    traced = trace(model, *specs)
    ctx = PassContext(model=model, print_after=print_after if print_after == "all" else set(print_after))
    if backend_source:
        if stage != "optimized":
            raise ValueError("the backend source exists only for the optimized stage")
        if backend_source == "cuda":  # the code, without compiling it: no GPU needed
            from lazyfuse.backends.numba_cuda import backend as cuda_backend
            from lazyfuse.backends.numba_cuda.codegen import generate

            graph = run_passes(traced.copy(), stage_passes(stage, "cuda"), ctx)
            source = generate(graph, cuda_backend.default_geometry(), cuda_backend.default_gemm()).source
            return StageResult(stage, traced, graph, passes, source)
        cm = lf_compile(model, *specs, backend="cpu", ctx=ctx)
        return StageResult(stage, traced, cm.graph, passes, cm.source)
    graph = run_passes(traced.copy(), passes, ctx) if passes else traced
    return StageResult(stage, traced, graph, passes)
