"""Training data: discovery, refusal of the evaluation set, bad inputs, samples, flows, sampler."""
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from refcolor.errors import RefcolorError
from refcolor.flow import warp_torch
from refcolor.train.data import ClipDataset, ClipSpec, EpochSampler
from refcolor.train.sources import check_allowed, discover

SHARED = Path("/work/shared/data")


def texture(h, w, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (h // 8 + 2, w // 8 + 2, 3), dtype=np.uint8)
    return cv2.resize(small, (w + 16, h + 16), interpolation=cv2.INTER_CUBIC)


def frame_folder(root: Path, n: int, h=48, w=64, seed=0) -> Path:
    """n frames of a colored texture panning 1 px right per frame."""
    root.mkdir(parents=True)
    tex = texture(h, w, seed)
    for i in range(n):
        cv2.imwrite(str(root / f"{i:05d}.png"), tex[4 : 4 + h, 8 - i % 8 : 8 - i % 8 + w][..., ::-1])
    return root


def write_video(path: Path, n: int, h=48, w=64):
    import av

    tex = texture(h, w)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(tex[4 : 4 + h, 8 - i % 8 : 8 - i % 8 + w]), format="rgb24")
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    return path


def test_refuses_the_evaluation_set(tmp_path):
    dev = frame_folder(tmp_path / "data" / "davis16-dev" / "blackswan", 4)
    for root in (dev, dev.parent, tmp_path / "data"):
        with pytest.raises(RefcolorError, match="davis16-dev"):
            discover([str(root)])
    assert discover([str(tmp_path / "data")], force=True).sequences
    if (SHARED / "davis16-dev").is_dir():
        with pytest.raises(RefcolorError, match="evaluation-only"):
            check_allowed(SHARED / "davis16-dev")
        with pytest.raises(RefcolorError, match="evaluation-only"):
            check_allowed(SHARED)


def test_empty_missing_and_unusable_roots(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RefcolorError, match="no frames"):
        discover([str(tmp_path / "empty")])
    with pytest.raises(RefcolorError, match="not found"):
        discover([str(tmp_path / "nope")])
    (tmp_path / "junk.mp4").write_bytes(b"not a video" * 100)
    with pytest.warns(UserWarning, match="unreadable"):
        with pytest.raises(RefcolorError, match="no usable"):
            discover([str(tmp_path / "junk.mp4")])


def test_short_and_corrupt_inputs_are_skipped_and_counted(tmp_path):
    root = tmp_path / "root"
    frame_folder(root / "frames" / "good", 6)
    frame_folder(root / "frames" / "single", 1, seed=1)
    write_video(root / "clips" / "a.mp4", 8)
    write_video(root / "clips" / "one.mp4", 1)
    (root / "clips" / "bad.mp4").write_bytes(np.random.default_rng(0).integers(0, 255, 5000, dtype=np.uint8).tobytes())
    with pytest.warns(UserWarning, match="bad.mp4"):
        d = discover([str(root)], min_frames=2)
    assert sorted(s.name for s in d.sequences) == ["clips/a.mp4", "frames/good"]
    assert len(d.too_short) == 2 and len(d.corrupt) == 1
    assert "2 too short, 1 unreadable" in d.summary()


def test_davis_layout_reads_frames_not_masks(tmp_path):
    frame_folder(tmp_path / "JPEGImages" / "480p" / "bear", 5)
    frame_folder(tmp_path / "Annotations" / "480p" / "bear", 5)
    d = discover([str(tmp_path)])
    assert [s.name for s in d.sequences] == ["bear"] and d.sequences[0].num_frames == 5


def make_dataset(tmp_path, **kw):
    root = tmp_path / "root"
    frame_folder(root / "f1", 7)
    frame_folder(root / "f2", 3, seed=2)  # shorter than a clip: bounced
    write_video(root / "v.mp4", 12)
    d = discover([str(root), "skimage"])
    spec = ClipSpec(size=(32, 48), clip_len=4, **kw)
    return ClipDataset(d.sequences, spec, seed=3, flow="dis", flow_cache=tmp_path / "flow", frame_cache=tmp_path / "frames")


def test_samples_are_deterministic_and_well_formed(tmp_path):
    ds = make_dataset(tmp_path, aux_frames=2)
    for key in range(len(ds) * 2):
        s = ds[key]
        assert s["rgb"].shape == (4, 3, 32, 48) and s["ref"].shape == (3, 32, 48)
        assert s["flow"].shape == (3, 2, 32, 48) and s["mask"].shape == (3, 1, 32, 48)
        assert s["aux"].shape == (2,) and 0 <= s["rgb"].min() and s["rgb"].max() <= 1
        assert torch.isfinite(s["flow"]).all() and set(s["mask"].unique().tolist()) <= {0.0, 1.0}
    a, b = ds[5], ds[5]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_flows_are_cached_across_epochs(tmp_path):
    ds = make_dataset(tmp_path)
    video_keys = [k for k in range(len(ds)) if ds.sequences[ds.items[k]].kind != "still"]
    for k in video_keys:
        ds[k]
    misses = ds.flow_cache.misses
    assert misses > 0
    ds2 = ClipDataset(ds.sequences, ds.spec, seed=ds.seed, flow="dis", flow_cache=tmp_path / "flow", frame_cache=tmp_path / "frames")
    first = {k: ds2[k] for k in video_keys}  # same keys: every flow pair is on disk already
    assert ds2.flow_cache.misses == 0 and ds2.flow_cache.hits > 0
    assert all(torch.equal(first[k]["flow"], ds[k]["flow"]) for k in video_keys)


def test_still_pseudo_video_flow_is_exact(tmp_path):
    d = discover(["skimage"])
    ds = ClipDataset(d.sequences[:1], ClipSpec(size=(64, 96), clip_len=3), seed=0)
    s = ds[0]
    lab = s["rgb"]
    warped = warp_torch(lab[:-1], s["flow"])  # frame t-1 brought onto frame t
    err = ((warped - lab[1:]).abs() * s["mask"]).sum() / (s["mask"].sum() * 3)
    moved = (lab[:-1] - lab[1:]).abs().mean()
    assert s["mask"].mean() > 0.5 and err < 0.35 * moved


def test_unreadable_frame_skips_its_sequence(tmp_path):
    root = tmp_path / "root"
    frame_folder(root / "ok", 6)
    bad = frame_folder(root / "broken", 6, seed=1)
    for f in bad.iterdir():
        f.write_bytes(b"garbage")
    d = discover([str(root)])
    ds = ClipDataset(d.sequences, ClipSpec(size=(32, 48), clip_len=2), seed=0, flow="dis")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        for k in range(8):
            assert ds[k]["rgb"].shape == (2, 3, 32, 48)
    assert list(ds.failures) == ["broken"]


def test_sampler_has_distributed_semantics_and_resumes():
    n = 7
    full = [k for k, _ in zip(EpochSampler(n, seed=1), range(3 * n))]
    assert sorted(k % n for k in full[:n]) == list(range(n))  # an epoch is a permutation
    ranks = [[k for k, _ in zip(EpochSampler(n, seed=1, rank=r, world_size=2), range(8))] for r in range(2)]
    order = EpochSampler(n, seed=1).order(0)
    padded = order + order[:1]  # 7 -> 8 entries, wrapped like DistributedSampler
    assert ranks[0][:4] == padded[0::2] and ranks[1][:4] == padded[1::2]
    resumed = [k for k, _ in zip(EpochSampler(n, seed=1, start=5), range(6))]
    assert resumed == full[5:11]


def test_held_out_sequences_are_excluded_and_returned(tmp_path):
    root = tmp_path / "root"
    frame_folder(root / "keep", 4)
    frame_folder(root / "val", 4, seed=1)
    d = discover([str(root)], exclude=("val",))
    assert [s.name for s in d.sequences] == ["keep"] and [s.name for s in d.held_out] == ["val"]
    with pytest.raises(RefcolorError, match="nope"):
        discover([str(root)], exclude=("nope",))
