"""Session-scoped real datasets on disk for the pipelines tests (see pipeline_fixtures.py)."""

from __future__ import annotations

import pytest

import pipeline_fixtures as pf


@pytest.fixture(scope="session")
def imagenet_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet")
    # 400x300: the val resize to 256 is a downscale, exercising antialiasing like real ImageNet photos
    written = pf.write_imagefolder(str(root), classes=3, train_per_class=8, val_per_class=5, size=(400, 300))
    return str(root), written


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    truth = pf.write_tiny_imagenet(str(root))
    return str(root), truth


@pytest.fixture(scope="session")
def cifar10_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar10")
    return str(root), pf.write_cifar10(str(root))


@pytest.fixture(scope="session")
def cifar100_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar100")
    return str(root), pf.write_cifar100(str(root))


@pytest.fixture(scope="session")
def mnist_gz_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist-gz")
    return str(root), pf.write_mnist(str(root), gz=True)


@pytest.fixture(scope="session")
def mnist_raw_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist-raw")
    return str(root), pf.write_mnist(str(root), gz=False)


@pytest.fixture(params=["gz", "raw"])
def mnist_root(request):
    return request.getfixturevalue(f"mnist_{request.param}_root")


@pytest.fixture(scope="session")
def fashion_mnist_root() -> str:
    """The real Fashion-MNIST (Debian's dataset-fashion-mnist), installed by pipelines/install_fashion_mnist.sh
    where apt-get and root are available; elsewhere the tests using it skip with the script's one-line reason."""
    import os
    import subprocess
    from pathlib import Path

    from pipelines.datasets import dataset_entry

    variable, path = dataset_entry("fashion-mnist").default_root
    if os.environ.get(variable):
        return os.environ[variable]
    script = Path(__file__).resolve().parents[2] / "pipelines" / "install_fashion_mnist.sh"
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        pytest.skip((result.stdout.strip().splitlines() or ["install_fashion_mnist.sh failed"])[-1])
    return path
