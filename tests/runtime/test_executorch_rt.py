"""ExecuTorch backend: outputs by name, metadata from the program, threads, clear errors."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("executorch.runtime", reason="the executorch extra is not installed")

from edgeseg import runtime  # noqa: E402
from edgeseg.runtime.base import BackendError  # noqa: E402
from edgeseg.runtime.executorch_rt import ExecuTorchBackend, set_threads, thread_count  # noqa: E402


def write_pte(root: Path, model: str = "unet_test", hw: tuple[int, int] = (32, 32)) -> tuple:
    """(pte path, PyTorch model, meta) of an untrained tiny model lowered to XNNPACK."""
    import torch

    from edgeseg.artifacts.checkpoint import load_checkpoint
    from edgeseg.artifacts.metadata import pte_constant_methods
    from edgeseg.export.torch2executorch import delegable_model, lower
    from tests.conftest import make_checkpoint

    ckpt = load_checkpoint(make_checkpoint(root / f"{model}.pt", model=model))
    net, meta, _ = delegable_model(ckpt.model, ckpt.meta)
    names = list(net.output_names)
    data, _ = lower(net, torch.randn(1, meta.in_channels, *hw), pte_constant_methods(meta, names))
    path = root / f"{model}.pte"
    path.write_bytes(data)
    return path, net, meta


@pytest.fixture(scope="module")
def pte(tmp_path_factory):
    return write_pte(tmp_path_factory.mktemp("pte"))


def test_open_by_suffix_returns_outputs_by_name_matching_pytorch(pte):
    import torch

    path, net, meta = pte
    be = runtime.open(path, threads=1)
    assert isinstance(be, ExecuTorchBackend) and be.name == "executorch" and be.provider == "executorch-xnnpack"
    x = np.random.default_rng(0).standard_normal((3, 32, 32)).astype(np.float32)[None]  # batch axis: stride 0
    out = be(x)
    assert list(out) == be.output_names == ["logits"]
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out["logits"], ref, atol=1e-4)
    assert be.inputs[0].shape == (1, 3, 32, 32) and be.inputs[0].fixed_hw == (32, 32)
    assert be.meta.to_dict() == meta.to_dict() and be.precision == "fp32"


def test_threads_are_set_before_loading_and_never_resized_under_an_open_program(pte):
    path, _, _ = pte
    gc.collect()  # backends of earlier tests are closed
    x = np.zeros((1, 3, 32, 32), np.float32)
    one = ExecuTorchBackend(path, threads=1)
    assert one.threads == thread_count() == 1
    one(x)
    # XNNPACK holds the pool a program was loaded with: resizing it under `one` would crash the process.
    with pytest.raises(BackendError, match=r"is open with 1 threads .* close it before opening a program with 2"):
        ExecuTorchBackend(path, threads=2)
    same = ExecuTorchBackend(path, threads=1)
    same(x)
    del one, same
    gc.collect()
    two = ExecuTorchBackend(path, threads=2)
    assert two.threads == thread_count() == 2
    two(x)
    assert ExecuTorchBackend(path).threads == 2  # no threads asked: the pool's size is recorded
    with pytest.raises(BackendError, match="is open with 2 threads"):
        set_threads(1)


def test_wrong_input_shape_is_a_one_line_error(pte):
    be = ExecuTorchBackend(pte[0])
    with pytest.raises(BackendError, match=r"fixed input of \[1, 3, 32, 32\], got \[1, 3, 64, 64\]"):
        be(np.zeros((1, 3, 64, 64), np.float32))


class _Program:
    """Stands in for a loaded program without edgeseg's constant methods."""

    method_names = {"forward"}


PTE_HEADER = b"\x00\x00\x00\x00ET12"  # a flatbuffer whose file identifier is ExecuTorch's


def test_program_without_metadata_and_broken_files_are_clear_errors(pte, tmp_path):
    from edgeseg.artifacts import ArtifactError
    from edgeseg.artifacts.metadata import read_pte

    with pytest.raises(ArtifactError, match=r"x.pte: no edgeseg metadata in the program \(method 'edgeseg_meta' missing\)"):
        read_pte(_Program(), "x.pte")
    junk = tmp_path / "junk.pte"
    junk.write_bytes(b"not a program")
    with pytest.raises(BackendError, match="junk.pte: not an ExecuTorch program"):
        ExecuTorchBackend(junk)
    junk.write_bytes(PTE_HEADER + b"but a broken body")  # passes the header check, fails in the runtime
    with pytest.raises(BackendError, match="junk.pte: ExecuTorch cannot load it"):
        ExecuTorchBackend(junk)
    with pytest.raises(BackendError, match="CPU"):
        ExecuTorchBackend(pte[0], device="cuda")


def test_missing_package_names_the_extra(hide_package, tmp_path):
    hide_package("executorch")
    (tmp_path / "model.pte").write_bytes(PTE_HEADER + bytes(16))
    with pytest.raises(BackendError, match=r"pip install 'edgeseg\[executorch\]'"):
        ExecuTorchBackend(tmp_path / "model.pte")
