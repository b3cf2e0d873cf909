#!/usr/bin/env bash
# Rebuild the packaged `lite` weights (docs/MODEL.md; session 8's candidate) from the `lite` weights first packaged (commit 1312519):
#
#     bash tools/reproduce_candidate.sh [RUNS_DIR] [DATA_DIR]    # defaults: runs ../shared/data/train
#
#   1. stage 1, the matching on cached frozen taps (tools/train_matching.py), 200 steps, then 50 more
#      with the scalars' rate at 3e-2 (docs/TRAINING.md "Session 6");
#   2. propagation on (propagate_bias 0.05, read at inference, no training) -> candidate-s6;
#   3. stage 3, the colorization subnet on traces of candidate-s6 (tools/train_subnet.py), L1 + 0.1 x
#      the one-sided colorfulness term at 0.9, 600 steps, kept by the "color" rule (TRAINING.md "Session 7");
#   4. stage 2 restricted to the linkage memory (train_only, 3-block clips) from candidate-s6, 20 steps,
#      EMA 0.95 (TRAINING.md "Session 8"); independent of 3, so the two can run side by side (one
#      thread each);
#   5. the candidate: 4's weights with 3's colorization subnet (the only tensors 3 trains);
#   6. its output chroma gain chosen on the held-out sequences (tools/chroma_gain.py; 1.00 in session
#      10), propagation read in a window of 12 cells (session 12, same tensors);
#   7. head 2 and the correspondence CNN-Transformer blocks switched off (tools/slim_model.py), stage 3 again
#      on the slim network's traces, the gain rule again (session 13), then the fp16 export: tensor for
#      tensor and config the packaged `lite` weights (docs/MODEL.md).
# About 1 h 45 min on this 2-core CPU (session 10: 62 min to step 5, with steps 3 and 4 run side by side by hand;
# session 13: 16 min of traces and 11 min of stage 3 for step 7) with a second process (tools/fill_from_end.py) filling the stage-1 cache and the traces from the
# other end. Each step is skipped when its output exists, so the script resumes after an interruption.
set -euo pipefail
RUNS=${1:-runs}
DATA=${2:-../shared/data/train}
mkdir -p "$RUNS"
# The start: the lite weights shipped before this candidate replaced them (git history, commit 1312519).
START="$RUNS/lite-v2.safetensors"
[[ -f "$START" ]] || git show 1312519:src/refcolor/weights/lite.safetensors > "$START"

[[ -f "$RUNS/matching/matching-best.safetensors" ]] || python tools/train_matching.py \
    --init-from "$START" --data "$DATA" --out "$RUNS/matching" --steps 200 --val-every 50
[[ -f "$RUNS/matching-b/matching-best.safetensors" ]] || python tools/train_matching.py \
    --init-from "$RUNS/matching/matching-best.safetensors" --data "$DATA" --out "$RUNS/matching-b" \
    --steps 50 --val-every 50 --lr-scalars 0.03 --seed 1 --cache "$RUNS/matching/cache"
[[ -f "$RUNS/candidate-s6.safetensors" ]] || python - "$RUNS" <<'PY'
import sys
from refcolor.checkpoint import load_model, save_model
runs = sys.argv[1]
m = load_model(f"{runs}/matching-b/matching-best.safetensors")
m.cfg = m.cfg.replace(propagate_bias=0.05)
save_model(m, f"{runs}/candidate-s6.safetensors")
PY
[[ -f "$RUNS/subnet-f/subnet-best.safetensors" ]] || python tools/train_subnet.py \
    --init-from "$RUNS/candidate-s6.safetensors" --data "$DATA" --out "$RUNS/subnet-f" --traces "$RUNS/traces" \
    --steps 600 --w-color 0.1 --color-target 0.9 --val-every 100 --select color
[[ -f "$RUNS/linkage/model-best.safetensors" ]] || refcolor train --config configs/lite.toml --data "$DATA" \
    --out "$RUNS/linkage" --steps 20 --set "init_from=\"$RUNS/candidate-s6.safetensors\"" \
    --set 'train_only=["linkage."]' --set model.propagate_bias=0.05 --set block_size=3 --set clip_len=9 \
    --set w_adv=0 --set w_perc=0 --set lr=3e-4 --set ema_decay=0.95 --set val_every=20 --set checkpoint_every=10 \
    --set threads=1
[[ -f "$RUNS/candidate.safetensors" ]] || python - "$RUNS" <<'PY'
import sys
from refcolor.checkpoint import load_model, save_model
runs = sys.argv[1]
model, subnet = load_model(f"{runs}/linkage/model-best.safetensors"), load_model(f"{runs}/subnet-f/subnet-best.safetensors")
state = model.state_dict()
state.update({k: v for k, v in subnet.state_dict().items() if k.startswith("colorization.")})
model.load_state_dict(state)
save_model(model, f"{runs}/candidate.safetensors")
PY
[[ -f "$RUNS/candidate-gain.safetensors" ]] || python tools/chroma_gain.py "$RUNS/candidate.safetensors" \
    --data "$DATA" --write "$RUNS/candidate-gain.safetensors"
# Session 12: propagation reads the lent frame in a window of 12 cells (ModelConfig.propagate_window), the
# smallest of 4, 8, 12 within 0.02 dB of the non-local read on the hold-out (docs/MODEL.md); same tensors.
[[ -f "$RUNS/candidate-window.safetensors" ]] || python - "$RUNS" <<'PY'
import sys
from refcolor.checkpoint import load_model, save_model
runs = sys.argv[1]
m = load_model(f"{runs}/candidate-gain.safetensors")
m.cfg = m.cfg.replace(propagate_window=12)
save_model(m, f"{runs}/candidate-window.safetensors")
PY
# Session 13: head 2 and the correspondence CNN-Transformer blocks switched off (neither earned its place in
# session 12's component table; tools/slim_model.py folds head 2 exactly), then stage 3 again on traces of
# the slim network, same settings and rule, from its own subnet; then the gain rule again.
[[ -f "$RUNS/slim.safetensors" ]] || python tools/slim_model.py "$RUNS/candidate-window.safetensors" \
    --out "$RUNS/slim.safetensors"
[[ -f "$RUNS/subnet-slim/subnet-best.safetensors" ]] || python tools/train_subnet.py \
    --init-from "$RUNS/slim.safetensors" --data "$DATA" --out "$RUNS/subnet-slim" --traces "$RUNS/traces-slim" \
    --steps 600 --w-color 0.1 --color-target 0.9 --val-every 100 --select color
[[ -f "$RUNS/slim-gain.safetensors" ]] || python tools/chroma_gain.py "$RUNS/subnet-slim/subnet-best.safetensors" \
    --data "$DATA" --write "$RUNS/slim-gain.safetensors"
python tools/export_model.py "$RUNS/slim-gain.safetensors" --out "$RUNS/lite.safetensors" \
    --note "tools/reproduce_candidate.sh"
echo "candidate: $RUNS/candidate.safetensors; packaged form: $RUNS/lite.safetensors"
