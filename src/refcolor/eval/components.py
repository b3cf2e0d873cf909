"""``refcolor evaluate --components MODEL``: the paper's Table 2 on ONE trained checkpoint.

Each row switches one part of the model off at evaluation time (``refcolor.models.network.Ablation``,
no retraining): the colorization subnet (output = head 1's warp W1), the linkage memory (reset at
every block), head 2 (W1,S1 fed in W2,S2's slots) and the correspondence subnet's CNN-Transformer
blocks (skipped). The paper's Table 2 retrains a model per row; separately trained checkpoints are
``--ablations``. Rows a model cannot have (e.g. no head 2 with ``double_head=False``) are left out
with the reason. The summary's ``components`` entry holds, per model, each row's mean metrics and
their change against the full model; ``markdown`` renders it for results.md.
"""
from __future__ import annotations

from dataclasses import asdict

from ..errors import RefcolorError
from .baselines import Method, ModelMethod

__all__ = ["ROWS", "build_component_methods", "summarize", "markdown", "BAR"]

# (label suffix, Ablation field, what the row means)
ROWS = (
    ("subnet (W1)", "no_subnet", "colorization subnet bypassed: output = head 1's warp W1, up-sampled along the "
                                 "subnet's own path (to H/color_scale, then H)"),
    ("memory", "reset_memory", "memory reset at every block (linkage tokens and, with propagation, what it lends)"),
    ("linkage", "reset_linkage", "linkage tokens reset at every block, propagation kept (the paper's linkage subnet alone)"),
    ("head2", "no_head2", "head 2 off: the colorization subnet gets W1,S1 in place of W2,S2"),
    ("transformer", "no_transformer", "correspondence CNN-Transformer blocks skipped (R'_high = reduced R_high, ho = hi)"),
)
METRICS = (("PSNR", "↑", 2), ("COLOR", "↑", 2), ("WE", "↓", 3), ("CDC", "↓", 5))
# Issue 15's bar for a part to earn its place: removing it costs >= 0.1 dB PSNR, or WE rises >= 3 %,
# or COLOR falls >= 3 %.
BAR = {"PSNR": -0.1, "WE": 0.03, "COLOR": -0.03}


def build_component_methods(spec: str, methods: list[Method], *, device, size) -> tuple[list[Method], dict]:
    """The full model (reused when ``methods`` already has ``spec``) and one method per row.

    Returns (methods to add, the group: spec, full method, rows as (method, switch, meaning), skipped
    rows by name with the reason). Groups keep the method objects: their labels are final only once
    ``runner.build_methods`` has made every label unique."""
    from ..models.network import Ablation, RefColorNet

    full = next((m for m in methods if isinstance(m, ModelMethod) and m.spec == spec), None)
    added: list[Method] = []
    if full is None:
        full = ModelMethod(spec, device=device, size=size)
        added.append(full)
    if not isinstance(full.colorizer.model, RefColorNet):
        raise RefcolorError(f"--components {spec}: needs a trained network (a preset with weights or a checkpoint), "
                            "not the training-free warp")
    group: dict = {"spec": spec, "full": full, "rows": [], "skipped": {}}
    for suffix, switch, meaning in ROWS:
        method = ModelMethod(spec, device=device, size=size, label=f"{full.name} -{suffix}")
        try:
            method.colorizer.model.set_ablation(Ablation(**{switch: True}))
        except RefcolorError as err:
            group["skipped"][suffix] = str(err)
            continue
        method.ablation = asdict(method.colorizer.model.ablation)
        added.append(method)
        group["rows"].append((method, switch, meaning))
    return added, group


def _num(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def summarize(groups: list[dict], mean: dict[str, dict]) -> list[dict]:
    """Each group with, per row, its means and ``delta`` (row - full) and ``relative`` ((row - full) / full)
    for PSNR, COLOR, WE and CDC, and ``earns_place`` (issue 15's bar): True when one criterion is met,
    False when all three are numbers and none is, else None (e.g. a zero warp error to compare with)."""
    out = []
    for g in groups:
        full = mean.get(g["full"].name, {})
        rows = []
        for method, switch, meaning in [(g["full"], None, "full model")] + g["rows"]:
            r = {"name": method.name, "switch": switch, "meaning": meaning}
            m = mean.get(r["name"], {})
            delta, relative = {}, {}
            for k, _, _ in METRICS:
                a, b = m.get(k), full.get(k)
                delta[k] = a - b if _num(a) and _num(b) else None
                relative[k] = (a - b) / b if delta[k] is not None and b else None
            row = {**r, "mean": {k: m.get(k) for k, _, _ in METRICS}, "delta": delta, "relative": relative}
            if switch is not None:
                met = [None if delta["PSNR"] is None else delta["PSNR"] <= BAR["PSNR"],
                       None if relative["WE"] is None else relative["WE"] >= BAR["WE"],
                       None if relative["COLOR"] is None else relative["COLOR"] <= BAR["COLOR"]]
                row["earns_place"] = True if any(met) else (False if None not in met else None)
            rows.append(row)
        out.append({"model": g["full"].name, "spec": g["spec"], "skipped": g["skipped"], "rows": rows})
    return out


def _cell(value: object, digits: int) -> str:
    if _num(value):
        return f"{value:.{digits}f}"
    return "–" if value is None else "n/a"


def _signed(value: object, digits: int, pct: bool = False) -> str:
    if not _num(value):
        return "–"
    return f"{100 * value:+.1f} %" if pct else f"{value:+.{digits}f}"


def markdown(summary: dict) -> list[str]:
    """results.md lines of the component tables ([] when ``--components`` was not given)."""
    out: list[str] = []
    for g in summary.get("components") or []:
        out += [f"## Components of `{g['model']}` (paper Table 2 on one checkpoint)", "",
                f"`{g['spec']}` with one part switched off at evaluation time (no retraining). Δ against the full "
                "model: PSNR in dB, the others in % of the full model's value. *Earns its place*: removing the part "
                "costs at least 0.1 dB PSNR, or raises WE by 3 %, or lowers COLOR by 3 % (issue 15).", ""]
        header = ["row"] + [c for k, arrow, _ in METRICS for c in (f"{k} {arrow}", f"Δ{k}")] + ["earns its place"]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r in g["rows"]:
            cells, full = [r["name"]], r["switch"] is None
            for k, _, d in METRICS:
                change = _signed(r["delta"][k], d) if k == "PSNR" else _signed(r["relative"][k], d, pct=True)
                cells += [_cell(r["mean"][k], d), "–" if full else change]
            cells.append({True: "yes", False: "no"}.get(r.get("earns_place"), "–"))
            lines.append("| " + " | ".join(cells) + " |")
        out += lines + [""]
        out += [f"- `{r['name']}`: {r['meaning']}" for r in g["rows"][1:]]
        out += [f"- {name}: left out ({reason})" for name, reason in g["skipped"].items()] + [""]
    return out
