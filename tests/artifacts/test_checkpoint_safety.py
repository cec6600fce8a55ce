"""Opening a checkpoint never runs code from it; malformed checkpoints name their bad field (issue #12)."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from edgeseg.artifacts import ArtifactError
from edgeseg.artifacts.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, read_checkpoint
from tests.conftest import make_checkpoint


class _Payload:
    """Unpickling this runs ``touch <marker>`` (what a hostile model.pt does)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def _evil(path, marker, legacy=False):
    payload = {"format": CHECKPOINT_FORMAT, "version": 1, "model_config": {"name": "unet_test"},
               "model_state": {}, "meta": {}, "metrics": _Payload(marker)}
    if legacy:  # a plain pickle, not torch's zip container
        path.write_bytes(pickle.dumps(payload, protocol=2))  # the protocol torch.save uses
    else:
        torch.save(payload, path)
    return path


@pytest.mark.parametrize("legacy", [False, True])
def test_pickle_payload_is_refused_and_does_not_run(tmp_path, legacy):
    marker = tmp_path / "pwned"
    evil = _evil(tmp_path / "evil.pt", marker, legacy)
    with pytest.raises(ArtifactError, match=r"refused to load.*--trust-checkpoint") as info:
        load_checkpoint(evil)
    assert "\n" not in str(info.value) and "system" in str(info.value)
    assert not marker.exists()


def test_trust_checkpoint_really_unpickles_and_still_checks_fields(tmp_path):
    marker = tmp_path / "ran"
    evil = _evil(tmp_path / "evil.pt", marker)
    with pytest.raises(ArtifactError, match="field 'metrics' is int, expected a dict"):
        read_checkpoint(evil, trust=True)
    assert marker.exists()  # the opt-in is what it says: full unpickling


def test_cli_refuses_payload_in_one_line(tmp_path):
    from tests.test_cli import edgeseg

    marker = tmp_path / "pwned"
    proc = edgeseg("eval", _evil(tmp_path / "evil.pt", marker))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--trust-checkpoint" in lines[0] and "evil.pt" in lines[0]
    assert not marker.exists()


def _broken(tmp_path, mutate):
    good = read_checkpoint(make_checkpoint(tmp_path / "good.pt"))
    mutate(good)
    torch.save(good, tmp_path / "bad.pt")
    return tmp_path / "bad.pt"


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c.pop("model_config"), r"checkpoint field 'model_config' is missing"),
    (lambda c: c.update(model_state=[1, 2]), r"checkpoint field 'model_state' is list, expected"),
    (lambda c: c["model_state"].update(extra="text"), r"'model_state' entry 'extra' is str, expected a tensor"),
    (lambda c: c["model_config"].pop("name"), r"'model_config.name' is missing"),
    (lambda c: c["model_config"].update(wings=3), r"field 'model_config' does not build model 'unet_test'.*wings"),
    (lambda c: c["meta"].update(num_classes="four"), r"field 'meta': model metadata field 'num_classes' is str"),
    (lambda c: c["meta"].pop("classes"), r"field 'meta': model metadata lacks \['classes'\]"),
    (lambda c: c.update(epoch="1"), r"checkpoint field 'epoch' is str, expected an integer"),
])
def test_malformed_checkpoint_names_the_field(tmp_path, mutate, message):
    with pytest.raises(ArtifactError, match=message):
        load_checkpoint(_broken(tmp_path, mutate))


def test_resume_needs_training_state(tmp_path):
    path = make_checkpoint(tmp_path / "model.pt")  # a model.pt has no optimizer state
    with pytest.raises(ArtifactError, match=r"fields best_metric, optimizer, scheduler, scaler are missing: --resume"):
        read_checkpoint(path, resume=True)


def test_not_a_checkpoint_is_one_clear_error(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ArtifactError, match="junk.pt: (not a readable PyTorch checkpoint|refused)"):
        read_checkpoint(junk)
