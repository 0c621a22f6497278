"""ReparamConv2d's initialisation contract (layers/_reparam.py): every variant and every method's model built
on the ``meta`` device, moved with ``to_empty()`` and reset module by module (what FSDP and deferred init do)
equals a direct build: no tensor is filled only in ``__init__``."""

import pytest
import torch
from layer_variants import VARIANTS
from torch import nn

from layers import build_model, method_names

GEOMETRIES = [(4, 6, 3, {"padding": 1}), (3, 8, 5, {"stride": 2, "padding": 2, "bias": False}),
              (4, 8, 1, {})]
CASES = [pytest.param(v, g, id=f"{v.id}-{i}") for v in VARIANTS for i, g in enumerate(GEOMETRIES)
         if g[2] >= v.min_kernel]


def materialise(module: nn.Module) -> nn.Module:
    """``to_empty`` on the CPU, then each module's own ``reset_parameters`` in module order."""
    module.to_empty(device="cpu")
    for m in module.modules():
        if callable(getattr(m, "reset_parameters", None)):
            m.reset_parameters()
    return module


def _all_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and every buffer, the non-persistent ones (which no state_dict carries) included."""
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}


@pytest.mark.parametrize("variant,geometry", CASES)
def test_meta_build_then_reset_equals_direct_build(variant, geometry):
    c_in, c_out, k, kwargs = geometry
    torch.manual_seed(3)
    direct = variant.make(c_in, c_out, k, **kwargs)
    with torch.device("meta"):
        deferred = variant.make(c_in, c_out, k, **kwargs)
    torch.manual_seed(3)
    materialise(deferred)
    expected, got = _all_tensors(direct), _all_tensors(deferred)
    assert got.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(got[name], tensor), name
    x = torch.randn(2, c_in, 9, 9)
    torch.testing.assert_close(deferred.eval()(x), direct.eval()(x), rtol=0, atol=0)


@pytest.mark.parametrize("method", method_names())
def test_meta_model_loads_a_checkpoint_and_computes_the_same(method):
    """A model materialised from ``meta`` and given a checkpoint (which holds no non-persistent buffer) computes
    what the model that wrote it does: the derived buffers were refilled by the resets, not left empty."""
    knobs = {"stnd": True} if method == "stdconv" else {}
    direct = build_model("resnet20", 10, method, kernel_size=5, **knobs).eval()
    with torch.device("meta"):
        deferred = build_model("resnet20", 10, method, kernel_size=5, **knobs)
    materialise(deferred).load_state_dict(direct.state_dict())
    for name, buffer in direct.named_buffers():
        assert torch.equal(dict(deferred.named_buffers())[name], buffer), name
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(deferred.eval()(x), direct(x), rtol=0, atol=0)
