"""One registry per kind of name (orchestrator.spec.names): the schema's enums, the errors' allowed lists and
the CLI's list of names all come from it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import typing

import pytest

import pipelines
from orchestrator.run.preflight import check_sweep
from orchestrator.spec import names
from orchestrator.spec.errors import ConfigError
from orchestrator.spec.load import load_sweep
from orchestrator.spec.schema import DatasetSpec, LayerSpec, OptimizerSpec, ResourcesSpec, ScheduleSpec, SweepSpec


def _enum(model: type, field: str) -> list[str]:
    ann = model.model_fields[field].annotation
    literal = next(a for a in [ann, *typing.get_args(ann)] if typing.get_origin(a) is typing.Literal)
    return list(typing.get_args(literal))


def test_schema_enums_are_the_registries():
    assert _enum(LayerSpec, "method") == list(names.layer_methods())
    assert _enum(OptimizerSpec, "name") == list(names.OPTIMIZERS)
    assert _enum(ScheduleSpec, "name") == list(names.SCHEDULES)
    assert _enum(ResourcesSpec, "gpu_type") == list(names.DEVICES)
    assert _enum(DatasetSpec, "backend") == list(names.backends()) == list(pipelines.BACKENDS)


def test_unknown_backend_is_refused_by_the_schema_listing_the_backends(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nbase: {dataset: {name: digits, backend: dali}}\n")
    with pytest.raises(ConfigError) as info:
        load_sweep(path, trials=False)  # the schema alone refuses it: no expansion, no registry lookups
    assert str(info.value) == (f"{path}: base.dataset.backend: not an allowed value (got 'dali'; allowed: "
                               f"{', '.join(pipelines.BACKENDS)})")


def test_a_model_registered_at_run_time_is_a_known_name():
    from torch import nn

    from layers import register_model

    if "tiny_registered_net" not in names.model_names():
        @register_model("tiny_registered_net")
        def tiny(num_classes: int, in_channels: int = 3) -> nn.Module:
            return nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(4, num_classes))

    spec = SweepSpec.model_validate({"name": "t", "base": {"model": "tiny_registered_net",
                                                           "dataset": {"name": "digits"}}})
    check_sweep(spec)
    # its kernels are not catalogued: a CoC conversion is checked by building it on the meta device
    coc = {"name": "t", "base": {"model": "tiny_registered_net", "dataset": {"name": "digits"},
                                 "layer": {"method": "coc", "skp": 0, "dilate": True}}}
    built = r"base.layer.dilate: invalid layer settings \(model tiny_registered_net, method coc\): CoCConv2d"
    with pytest.raises(ConfigError, match=built):
        check_sweep(SweepSpec.model_validate(coc))
    coc["base"]["layer"]["skp"] = 2
    check_sweep(SweepSpec.model_validate(coc))
    bad = spec.model_copy(update={"base": spec.base.model_copy(update={"model": "tiny_registred_net"})})
    with pytest.raises(ConfigError, match=r"base.model: unknown name .*tiny_registered_net"):
        check_sweep(bad)


def test_describe_lists_every_name_with_its_line():
    text = names.describe()
    for name, line in [*names.layer_methods().items(), *names.OPTIMIZERS.items(), *names.SCHEDULES.items()]:
        assert any(row.split() [:1] == [name] and line in row for row in text.splitlines()), name
    for name in [*names.model_names(), *names.datasets(), *names.backends(), *names.DEVICES]:
        assert any(row.split()[:1] == [name] for row in text.splitlines()), name


def test_names_import_no_torch():
    code = textwrap.dedent("""
        import sys
        from orchestrator.spec import names
        names.describe()
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "mlflow", "ray")))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
