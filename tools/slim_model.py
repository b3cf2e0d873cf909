"""Switch off, in a trained checkpoint, the parts that do not earn their place (issue 15, docs/MODEL.md).

    python tools/slim_model.py runs/candidate.safetensors --out runs/slim.safetensors [--keep-head2] [--keep-transformer]

* Head 2 (``double_head=False``): the ``no_head2`` component row gives the colorization subnet W1,S1
  in place of W2,S2. The subnet's first convolution is linear in its input, so that is folded exactly:
  the weights that read W2,S2 are added to those that read W1,S1 and the channels dropped. Head 2's
  projections and alpha go.
* The correspondence subnet's CNN-Transformer blocks (``num_ct_blocks=0``): the ``no_transformer`` row
  replaces every block by its identity path; with no block there is nothing else to do. The
  tokens (linkage read and write, the colorization subnet's own blocks) stay.

The output equals the original checkpoint's with those component switches on (tests/test_slim_model.py).
"""
from __future__ import annotations

import argparse
import sys

import torch

from refcolor.checkpoint import load_model, save_model
from refcolor.errors import RefcolorError
from refcolor.models.network import RefColorNet, build_model

STEM = "colorization.stem.0.weight"


def slim(model: RefColorNet, head2: bool = False, transformer: bool = False) -> RefColorNet:
    """A new model without head 2 (unless ``head2``) and the correspondence CNN-Transformer blocks
    (unless ``transformer``), computing what ``model`` computes with those component switches on."""
    cfg = model.cfg
    overrides = {}
    if not head2 and cfg.double_head:
        overrides["double_head"] = False
    if not transformer and cfg.num_ct_blocks:
        overrides["num_ct_blocks"] = 0
    if not overrides:
        raise RefcolorError("nothing to switch off: the checkpoint has neither head 2 nor correspondence CNN-Transformer blocks")
    new_cfg = cfg.replace(**overrides)
    state = model.state_dict()
    if "double_head" in overrides:
        w = state[STEM]  # C_out, 3 * 2 + 1 + 3, k, k: W1 S1 | W2 S2 | l | lab_ref
        state[STEM] = torch.cat([w[:, :3] + w[:, 3:6], w[:, 6:]], dim=1)
    out = build_model(new_cfg.replace(pretrained=False))
    wanted = out.state_dict()
    dropped = sorted(k for k in state if k not in wanted)
    for name in dropped:
        del state[name]
    out.load_state_dict(state)  # strict: every tensor of the slim model comes from the original
    out.cfg = new_cfg
    return out.to(next(model.parameters()).dtype)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True)
    p.add_argument("--keep-head2", action="store_true")
    p.add_argument("--keep-transformer", action="store_true")
    args = p.parse_args(argv)
    try:
        model = load_model(args.checkpoint)
        save_model(slim(model, args.keep_head2, args.keep_transformer), args.out)
    except RefcolorError as err:
        print(f"slim_model: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
