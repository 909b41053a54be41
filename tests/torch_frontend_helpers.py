"""Shared by tests/test_frontend_torch.py and tests/test_frontend_torch_runtime.py: the backends,
dtypes and tolerances, and the comparisons of a compiled torch model with its eager twin."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

BACKENDS = ["reference", "cpu"]
DTYPES = ["float32", "float64"]
TDTYPE = {"float32": torch.float32, "float64": torch.float64}
TOL = {"float32": dict(rtol=1e-5, atol=1e-5), "float64": dict(rtol=1e-10, atol=1e-10)}


def _randomize_bn(model: nn.Module) -> None:
    """Random BatchNorm affine parameters and running stats, so every term counts."""
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                if mod.affine:
                    mod.weight.uniform_(0.5, 1.5)
                    mod.bias.normal_()
                if mod.running_mean is not None:
                    mod.running_mean.normal_()
                    mod.running_var.uniform_(0.5, 2.0)
                    mod.num_batches_tracked.fill_(3)


def _assert_outputs(out, ref, dtype: str) -> None:
    outs, refs = (out, ref) if isinstance(ref, tuple) else ((out,), (ref,))
    assert isinstance(out, tuple) == isinstance(ref, tuple) and len(outs) == len(refs)
    for o, r in zip(outs, refs):
        assert type(o) is torch.Tensor and not o.requires_grad
        torch.testing.assert_close(o, r, **TOL[dtype])


def _assert_state(model: nn.Module, twin: nn.Module, dtype: str) -> None:
    got, want = model.state_dict(), twin.state_dict()
    assert list(got) == list(want)
    for k in want:
        torch.testing.assert_close(got[k], want[k], **TOL[dtype], msg=lambda m, k=k: f"{k}: {m}")


def _snapshot(model: nn.Module) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_unchanged(model: nn.Module, snap: dict) -> None:
    now = model.state_dict()
    assert list(now) == list(snap) and all(torch.equal(now[k], v) for k, v in snap.items())


def _small() -> nn.Sequential:
    return nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3))
