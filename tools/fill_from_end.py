"""A second process for the two long waits of tools/reproduce_candidate.sh: stage 1's tap cache and
stage 3's traces are one file per sequence, written once and atomically; this builds the same files
from the other end of the sequence list and stops where it meets one already built.

    python tools/fill_from_end.py cache  src/refcolor/weights/lite.safetensors runs/matching
    python tools/fill_from_end.py traces runs/candidate-s6.safetensors runs/traces

(the cache's run folder and the traces' folder as the stage's own command names them; the data
root as ``--data``, default ../shared/data/train). One torch thread.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from refcolor.cpu_math import flush_denormals
from refcolor.models.network import build_model
from refcolor.train.sources import discover


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=["cache", "traces"])
    p.add_argument("checkpoint", help="the stage's --init-from")
    p.add_argument("folder", help="cache: the stage-1 run folder (its cache/ inside); traces: the trace folder")
    p.add_argument("--data", default="../shared/data/train")
    args = p.parse_args()
    torch.set_num_threads(1)
    flush_denormals()
    if args.kind == "cache":
        from refcolor.config import get_config
        from refcolor.train import matching as stage
        from refcolor.train.runtime import load_init_weights

        cfg = stage.MatchingConfig(init_from=args.checkpoint, data=[args.data], out=args.folder)
        model = build_model(get_config(cfg.preset)).eval()
        load_init_weights(model, args.checkpoint, cfg.preset)
        min_frames, folder = cfg.gap_min + 1, Path(args.folder) / "cache"
    else:
        from refcolor.checkpoint import read_checkpoint
        from refcolor.train import subnet as stage

        cfg = stage.SubnetConfig(init_from=args.checkpoint, data=[args.data], out=args.folder)
        mcfg, tensors, _ = read_checkpoint(args.checkpoint)
        model = build_model(mcfg.replace(pretrained=False)).eval()
        model.load_state_dict(tensors)
        min_frames, folder = mcfg.block_size + 1, Path(args.folder)
    disc = discover([args.data], min_frames=min_frames, holdout=(cfg.val_count, cfg.val_min_frames, cfg.val_max_frames))
    held = {s.name for s in disc.held_out}
    videos = disc.held_out + [s for s in disc.sequences if s.kind != "still"]  # the stages' own order
    size = (cfg.height, cfg.width)
    for seq in reversed(videos):
        before = set(folder.glob("*")) if folder.exists() else set()
        if args.kind == "cache":
            stride, count = (cfg.val_stride, cfg.val_max_frames) if seq.name in held else (cfg.frame_stride, cfg.max_frames)
            idx = list(range(0, min(seq.num_frames, count), stride))
            if len(idx) < 2:
                continue
            path = stage.build_cache(model, seq, idx, size, folder, keep_rgb=seq.name in held)
        else:
            count = cfg.val_max_frames if seq.name in held else cfg.max_frames
            path = stage.build_trace(model, seq, size, count, mcfg.block_size, folder)
        if path in before:
            print(f"met {seq.name}: done", flush=True)
            return
        print(f"built {seq.name}", flush=True)


if __name__ == "__main__":
    main()
