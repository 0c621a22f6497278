"""The layers package as a whole (layers/__init__.py): small modules, and every public name resolves
(its torch-free import is checked in test_knobs.py)."""

from pathlib import Path

import layers

MAX_MODULE_LINES = 300


def test_no_module_over_the_size_limit():
    root = Path(layers.__file__).parent
    sizes = {str(p.relative_to(root)): len(p.read_text().splitlines()) for p in root.rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_every_public_name_resolves_from_its_module():
    for name in layers.__all__:
        assert getattr(layers, name) is not None, name

