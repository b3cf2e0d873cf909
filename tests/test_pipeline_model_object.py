"""``refcolor.colorize`` with a model object instead of a name or checkpoint path (the Python API,
benchmarks/memory.py)."""
from PIL import Image

import refcolor
from refcolor.models.warp import build_warp_model
from refcolor.video import open_source


def test_colorize_takes_a_model_object_for_a_video_output(small_video, tmp_path):
    ref = tmp_path / "ref.png"
    Image.new("RGB", (64, 48), (200, 60, 30)).save(ref)
    out = tmp_path / "out.mp4"
    # its repr is thousands of characters: it used to be probed as a checkpoint path (ENAMETOOLONG)
    result = refcolor.colorize(small_video, ref, out, model=build_warp_model().eval(), size=(32, 48),
                               progress=False, device="cpu")
    assert result.frames == 12 and result.model == "warp"
    with open_source(out) as source:
        assert sum(1 for _ in source) == 12
