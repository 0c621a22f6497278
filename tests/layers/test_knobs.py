"""The method and knob registry (layers/knobs.py) is the single source: the layers' defaults, the CLI's help
and the checks all agree with it, and it loads without torch."""

import inspect
import subprocess
import sys

import pytest

from layers import ReparamConv2d
from layers.create import layer_class
from layers.knobs import (KNOB_REGISTRY, METHOD_KNOBS, METHOD_REGISTRY, knob_names, layer_kwargs, method_help,
                          method_names, validate_knobs)


def test_every_method_names_a_layer_and_registered_knobs():
    assert method_names() == ("stdconv", "s-gmconv", "gmconv", "coc", "aconv")
    for name, method in METHOD_REGISTRY.items():
        assert issubclass(layer_class(name), ReparamConv2d)
        assert set(method.knobs) <= set(KNOB_REGISTRY) and set(method.policy_knobs) <= set(method.knobs)
        assert knob_names(name) == METHOD_KNOBS[name] == method.knobs
        assert method.help and all(KNOB_REGISTRY[k].help for k in method.knobs)


@pytest.mark.parametrize("method", method_names())
def test_registry_defaults_are_the_layers_defaults(method):
    """A knob the layer takes has the layer's keyword default (None: the model decides, e.g. CoC's wsc)."""
    params = inspect.signature(layer_class(method)).parameters
    taken = layer_kwargs(method, {k: KNOB_REGISTRY[k].default for k in knob_names(method)})
    assert taken or method == "stdconv"  # stdconv reads stnd as a policy: StdConv2d or a plain conv
    for arg, default in taken.items():
        assert arg in params, (method, arg)
        if default is not None:
            assert params[arg].default == default, (method, arg)


def test_layer_kwargs_uses_the_layer_keyword_and_drops_policy_knobs():
    assert layer_kwargs("aconv", {"aconv_sigma_init": [0.2, 0.4], "stnd": True}) == {"sigma_init": (0.2, 0.4),
                                                                                      "stnd": True}
    assert layer_kwargs("coc", {"c1x1": "ws", "sa": 3}) == {"sa": 3}
    assert layer_kwargs("stdconv", {"stnd": True}) == {}


@pytest.mark.parametrize("method,knobs,match", [
    ("coc", {"skip": "yes"}, r"^skip must be true or false \(got 'yes'\)$"),
    ("coc", {"wsc": 1}, r"^wsc must be true or false \(got 1\)$"),
    ("gmconv", {"sigma_pattern": "rsigma"}, r"^sigma_pattern must be one of \('sigma', 'sigma1_sigma2', "),
    ("aconv", {"aconv_sigma_init": [0.5, 0.1]}, r"^aconv_sigma_init must be a number > 0 or \[lo, hi\]"),
    ("coc", {"skp": 3}, r"^skp must be an even integer >= 0"),
    ("gmconv", {"sa": 2}, r"^unknown knob\(s\) \['sa'\] for method 'gmconv' \(allowed: \('sigma_init', "),
    ("conv", {}, r"^method must be one of \('stdconv', 's-gmconv', 'gmconv', 'coc', 'aconv'\) \(got 'conv'\)$"),
])
def test_bad_knobs_are_one_line_errors_with_the_allowed_values(method, knobs, match):
    with pytest.raises(ValueError, match=match):
        validate_knobs(method, knobs)


def test_method_help_lists_every_method_and_knob_with_default_and_allowed_values():
    text = method_help()
    for name, method in METHOD_REGISTRY.items():
        assert f"{name}: {method.help}" in text
        for knob in method.knobs:
            assert f"  {knob}: {KNOB_REGISTRY[knob].help} (default " in text
    assert "  skp: CoC: super kernel size minus the basic kernel's (default 2; an even integer >= 0" in text
    assert "  skip: CoC: add the canvas back around the super layers (default true; true or false)" in text


def test_registry_helpers_import_no_torch():
    code = ("import sys, layers; layers.method_help(); layers.knob_names('coc'); layers.method_names(); "
            "layers.model_names(); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
