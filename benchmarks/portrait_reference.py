"""A portrait reference for a landscape film: does it color its own region as well as the whole frame?

    python benchmarks/portrait_reference.py --sequences blackswan car-roundabout dog --models warp lite

For each DAVIS sequence (../shared/data/davis16-dev, 480x854) the frames are colorized at the
working size 216x384 three times, the reference always made from frame 0:
  whole     frame 0 as it is;
  portrait  the central 9:16 portrait column of frame 0 (480x270), encoded at its own aspect ratio
            and the frames' height, 216x120 (what refcolor does since issue 16), and, for
            comparison, at about the working size's pixel count, 384x216 (``fit="pixels"``);
  squashed  the same column first stretched to 216x384 (what refcolor did before: every
            reference was resized to the working size's shape).
PSNR (RGB, uint8) is computed over the column's region only (columns 131-252 of 384), per frame
for frames 1.., and averaged (and over frames 1-3 alone, before content from outside the column
moves into it). Input frames are the ground-truth frames at 216x384 (the network
reads only their L). One torch thread. Writes benchmarks/results/portrait_reference.{json,md}.

Why the portrait loses (``--why``, the default; ``--fits`` adds the two older encodings): the gap
whole -> shipped is split into steps, each one reference between the two:
  restricted  frame 0 encoded whole, but only the keys and chroma of positions inside the column
              kept (cell centre in columns 131-252, on each head's grid), and the column's lab as the
              colorization subnet's input: the same features, with the whole frame's context, but
              only the column's information. whole -> restricted
              is what the column does not hold (no reference handling can recover it);
  centred     the same features centred over the column's positions instead of the frame's
              (``center_normalize`` patched, benchmark only): the normalisation statistics;
  alone       the column of the working frame (columns 132-251, 120 px, the frames' own pixels
              and scale) encoded alone, as refcolor encodes a reference: the backbone and the
              Transformer see its edges as image borders and nothing beyond them;
  shipped     the portrait (480x270) resized to 216x120 as refcolor does: alone -> shipped is the
              resampling (scale 120/121.5).
Each is scored over all the region's pixels and over the "in" pixels only: those whose best match
(warp features, frame t against frame 0 whole) lies inside the column. The "out" share is the
fraction of the region whose best match lies outside the column.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F

from common import ROOT, machine, machine_line, set_threads, table, write_results

DAVIS = ROOT.parent / "shared" / "data" / "davis16-dev"
H, W = 216, 384


def resize(rgb: np.ndarray, h: int, w: int) -> np.ndarray:
    from refcolor.color import uint8_to_tensor

    t = F.interpolate(uint8_to_tensor(rgb), size=(h, w), mode="area")
    return (t[0].permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)


def load(sequence: str, count: int) -> list[np.ndarray]:
    from refcolor.video import read_image

    paths = sorted((DAVIS / sequence).glob("*.jpg"))[:count]
    return [read_image(p) for p in paths]


def masked_psnr(out: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    mse = float(np.mean((out[mask].astype(np.float64) - gt[mask].astype(np.float64)) ** 2))
    return float(10.0 * np.log10(255.0**2 / max(mse, 1e-10)))


def run(model, frames: list[np.ndarray], reference: np.ndarray, cols: slice, fit: str = "height",
        state=None, inside: list[np.ndarray] | None = None) -> tuple[float, ...]:
    """(mean PSNR over frames 1.., over frames 1-3) in the region ``cols``; with ``inside`` (per frame,
    a mask of the region) also both over its pixels. ``state``: a RefState used in place of
    encoding ``reference`` (the decomposition's references that refcolor itself would not build)."""
    from refcolor.eval.metrics import mean_psnr, psnr
    from refcolor.inference import Colorizer

    c = Colorizer(model, size=(H, W), device="cpu")
    c.reference_fit = fit
    c.set_reference(reference)
    if state is not None:
        c._ref_state = state  # benchmark only: the rest of the path (step, chroma, RGB) is refcolor's
    small = [resize(f, H, W) for f in frames]
    values, in_values = [], []
    for start in range(1, len(small), c.block_size):
        block = small[start : start + c.block_size]
        out = c.step(np.stack(block))
        for o, g in zip(out, block):
            o, g = np.ascontiguousarray(o[:, cols]), np.ascontiguousarray(g[:, cols])
            values.append(psnr(o, g))
            if inside is not None:
                in_values.append(masked_psnr(o, g, inside[len(in_values)]))
    res = (mean_psnr(values), mean_psnr(values[:3]))
    return res + (mean_psnr(in_values), mean_psnr(in_values[:3])) if inside is not None else res


def column_positions(size: tuple[int, int], cols: slice) -> "torch.Tensor":
    """Flat indices of the cells of a gh x gw grid (over H x W) whose centre lies in ``cols``."""
    gh, gw = size
    step = W / gw
    centres = (np.arange(gw) + 0.5) * step
    keep = np.nonzero((centres >= cols.start) & (centres < cols.stop))[0]
    return torch.as_tensor((np.arange(gh)[:, None] * gw + keep[None, :]).reshape(-1))


def grid_of(positions: int) -> tuple[int, int]:
    """The gh x gw grid (of the H x W frame's aspect) with ``positions`` cells."""
    gh = round((positions * H / W) ** 0.5)
    assert gh * (positions // gh) == positions, positions
    return gh, positions // gh


def lab_input(rgb: np.ndarray) -> "torch.Tensor":
    """Normalised lab at H x W, resized as ``Colorizer`` resizes a reference of the frames' shape."""
    from refcolor.color import normalize_lab, rgb_to_lab, uint8_to_tensor

    return normalize_lab(rgb_to_lab(F.interpolate(uint8_to_tensor(rgb), size=(H, W), mode="area")))


def restricted_state(model, frame0: np.ndarray, cols: slice, centre: str):
    """Frame 0 encoded whole; only the positions inside ``cols`` kept (see the docstring).
    centre="frame": the keys as encoded (centred over the frame); "column": the same features
    centred over the column's positions (``center_normalize`` patched for this encoding only)."""
    import refcolor.models.correspondence as correspondence
    import refcolor.models.warp as warp
    from refcolor.models.network import RefState

    original = correspondence.center_normalize
    selected = {}

    def centre_over_column(feat):
        p = feat.shape[-1]
        selected.setdefault(p, column_positions(grid_of(p), cols))
        return original(feat[..., selected[p]])

    lab = lab_input(frame0)
    with torch.inference_mode():
        if centre == "frame":
            state = model.encode_reference(lab)
        else:
            with mock.patch.object(correspondence, "center_normalize", centre_over_column), \
                 mock.patch.object(warp, "center_normalize", centre_over_column):
                state = model.encode_reference(lab)
    ab = [a[..., column_positions(grid_of(a.shape[-1]), cols)] for a in state.ab]
    keys = state.keys if centre == "column" else [k[..., column_positions(grid_of(k.shape[-1]), cols)] for k in state.keys]
    # the colorization subnet's lab input (lite, paper): the column's, as refcolor resizes a narrow
    # reference's lab to the frames' shape, so that no step holds colours from outside the column
    column_lab = F.interpolate(lab[..., 132:252], size=(H, W), mode="area")
    return RefState(keys=keys, ab=ab, lab=column_lab)


def padded_state(model, portrait: np.ndarray, left: int = 128):
    """The portrait at refcolor's size (216x120) reflect-padded to the frames' width (``left`` columns
    on the left, a multiple of 8), encoded, and only its own positions kept: a stand-in for the
    context that its edges lack (tried as a fix; docs/ROBUSTNESS.md)."""
    from refcolor.color import normalize_lab, rgb_to_lab, uint8_to_tensor
    from refcolor.models.network import RefState

    lab = normalize_lab(rgb_to_lab(F.interpolate(uint8_to_tensor(portrait), size=(H, 120), mode="area")))
    padded = torch.from_numpy(np.pad(lab[0].numpy(), ((0, 0), (0, 0), (left, W - 120 - left)), mode="reflect"))[None]
    with torch.inference_mode():
        state = model.encode_reference(padded)
    own = slice(left, left + 120)
    keys = [k[..., column_positions(grid_of(k.shape[-1]), own)] for k in state.keys]
    ab = [a[..., column_positions(grid_of(a.shape[-1]), own)] for a in state.ab]
    return RefState(keys=keys, ab=ab, lab=F.interpolate(lab, size=(H, W), mode="area"))


def inside_masks(frames: list[np.ndarray], cols: slice) -> list[np.ndarray]:
    """Per frame 1..: the region's pixels whose best match (warp keys, against frame 0 whole at
    216x384) lies inside the column ``cols``."""
    from refcolor.checkpoint import load_model

    warp = load_model("warp", torch.device("cpu"))
    small = [resize(f, H, W) for f in frames]  # as run() feeds them
    with torch.inference_mode():
        ref = warp.encode_reference(lab_input(frames[0]))
        masks = []
        for f in small[1:]:
            query, (gh, gw) = warp.match_keys(lab_input(f)[:, :1])
            best = torch.einsum("bkp,bkr->bpr", query, ref.keys[0]).argmax(-1)[0] % gw
            centre = (best.numpy() + 0.5) * W / gw
            inside = ((centre >= cols.start) & (centre < cols.stop)).reshape(gh, gw)
            masks.append(np.kron(inside, np.ones((H // gh, W // gw), dtype=bool))[:, cols])
    return masks


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sequences", nargs="+", default=["blackswan", "car-roundabout", "dog"])
    p.add_argument("--models", nargs="+", default=["warp", "lite"])
    p.add_argument("--frames", type=int, default=30, help="frames per sequence, frame 0 the reference")
    p.add_argument("--fits", action="store_true", help="also the portrait at the working pixel count and squashed")
    p.add_argument("--padded", action="store_true", help="also the portrait reflect-padded to the frames' width")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    set_threads(args.threads)
    from refcolor.checkpoint import load_model

    steps = (["whole", "restricted", "centred", "alone", "shipped"] + (["pixels", "squashed"] if args.fits else [])
             + (["padded"] if args.padded else []))
    info, rows, in_rows, data = machine(), [], [], []
    for name in args.models:
        model = load_model(name, torch.device("cpu"))
        for seq in args.sequences:
            frames = load(seq, args.frames)
            fh, fw = frames[0].shape[:2]
            cw = round(fh * 9 / 16)
            x0 = (fw - cw) // 2
            portrait = frames[0][:, x0 : x0 + cw]
            cols = slice(round(x0 * W / fw), round((x0 + cw) * W / fw))
            alone = np.ascontiguousarray(resize(frames[0], H, W)[:, 132:252])  # 120 px inside cols
            start = time.perf_counter()
            inside = inside_masks(frames, cols)
            out_share = float(1 - np.mean([m.mean() for m in inside]))
            out_share3 = float(1 - np.mean([m.mean() for m in inside[:3]]))
            res = {
                "whole": run(model, frames, frames[0], cols, inside=inside),
                "restricted": run(model, frames, frames[0], cols, state=restricted_state(model, frames[0], cols, "frame"), inside=inside),
                "centred": run(model, frames, frames[0], cols, state=restricted_state(model, frames[0], cols, "column"), inside=inside),
                "alone": run(model, frames, alone, cols, inside=inside),
                "shipped": run(model, frames, portrait, cols, inside=inside),
            }
            if args.fits:
                res["pixels"] = run(model, frames, portrait, cols, fit="pixels", inside=inside)
                res["squashed"] = run(model, frames, resize(portrait, H, W), cols, inside=inside)
            if args.padded:
                res["padded"] = run(model, frames, portrait, cols, state=padded_state(model, portrait), inside=inside)
            seconds = time.perf_counter() - start
            data.append(dict(model=name, sequence=seq, frames=len(frames) - 1, crop=[fh, cw], region_cols=[cols.start, cols.stop],
                             out_share=out_share, out_share_1_3=out_share3, seconds=seconds,
                             **{k: dict(all=v[:2], inside=v[2:]) for k, v in res.items()}))
            for span, i, share in ((f"1-{len(frames) - 1}", 0, out_share), ("1-3", 1, out_share3)):
                for table_rows, offset in ((rows, 0), (in_rows, 2)):
                    ref = res["whole"][offset + i]
                    table_rows.append([name, seq, span, f"{share:.0%}", f"{ref:.2f}"]
                                      + [f"{res[k][offset + i]:.2f} ({res[k][offset + i] - ref:+.2f})" for k in steps[1:]])
            print(rows[-2], rows[-1], in_rows[-2], in_rows[-1], f"{seconds:.0f} s", sep="\n", flush=True)
    names = {"restricted": "whole frame, column's positions only", "centred": "... centred over the column",
             "alone": "column of the working frame alone", "shipped": "portrait, frames' height (shipped)",
             "pixels": "portrait, working pixel count", "squashed": "portrait squashed to 216x384 (before)",
             "padded": "portrait reflect-padded, own positions"}
    head = ["model", "sequence", "frames", "region matched outside", "whole frame"] + [names[k] for k in steps[1:]]
    md = ("PSNR (dB) over the portrait column's region, reference from frame 0, working size 216x384. Each column "
          "differs from the one before it by one step (benchmarks/portrait_reference.py's docstring): whole -> "
          "positions only = what the column does not hold; -> centred = normalisation statistics; -> alone = "
          "the column's borders (its features see no context); -> shipped = resampling.\n\n"
          "All pixels of the region:\n\n" + table(head, rows)
          + "\n\nOnly the region's pixels whose best match in frame 0 lies inside the column:\n\n" + table(head, in_rows)
          + "\n\n" + machine_line(info))
    write_results("portrait_reference", {"machine": info, "rows": data}, md)

if __name__ == "__main__":
    main()
