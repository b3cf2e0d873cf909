"""TrainConfig: TOML file + --set overrides; unknown keys are errors that name the key."""
import pytest

from refcolor.errors import RefcolorError
from refcolor.train.recipe import TrainConfig, load_config, parse_set


def test_defaults_are_the_papers():
    c = TrainConfig()
    assert (c.w_l1, c.w_perc, c.w_temporal, c.w_adv, c.w_smooth) == (0.5, 0.05, 3.0, 0.2, 4.0)
    assert (c.lr, c.lr_backbone, c.lr_disc, tuple(c.betas), c.weight_decay) == (1e-4, 1e-5, 1e-3, (0.5, 0.999), 1e-4)
    assert c.block_size == 2 and tuple(c.lr_milestones) == (0.4, 0.8)


def test_file_and_set_overrides(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('preset = "lite"\nsteps = 7\nw_adv = 0.5\ndata = ["a"]\n[model]\ntau = 0.02\n')
    cfg = load_config(f, ["steps=9", "w_adv=0", "model.alpha=0.5", 'data=["b", "c"]', "perceptual=lite0"])
    assert cfg.steps == 9 and cfg.w_adv == 0.0 and cfg.data == ["b", "c"] and cfg.perceptual == "lite0"
    mcfg = cfg.model_config()
    assert mcfg.tau == 0.02 and mcfg.alpha == 0.5 and mcfg.train_block_size == 2 and mcfg.backbone == "efficientnet_lite0"


@pytest.mark.parametrize("item, name", [("stepz=3", "stepz"), ("model.taux=1", "taux")])
def test_unknown_set_key_is_named(item, name):
    with pytest.raises(RefcolorError, match=name):
        load_config(None, [item])


def test_unknown_file_key_is_named(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("steps = 3\nlearning_rate = 0.1\n")
    with pytest.raises(RefcolorError, match="learning_rate"):
        load_config(f)


def test_bad_values_are_errors(tmp_path):
    with pytest.raises(RefcolorError, match="steps"):
        load_config(None, ["steps=many"])
    with pytest.raises(RefcolorError, match="multiples of 8"):
        load_config(None, ["height=100"]).validate()
    with pytest.raises(RefcolorError, match="not valid TOML"):
        (tmp_path / "bad.toml").write_text("steps = = 3")
        load_config(tmp_path / "bad.toml")


def test_parse_set_types():
    assert parse_set("a=3") == ("a", 3)
    assert parse_set("a=0.5") == ("a", 0.5)
    assert parse_set("a=true") == ("a", True)
    assert parse_set("a=word") == ("a", "word")
    assert parse_set("model.x=2") == ("model", {"x": 2})


def test_shipped_configs_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "configs"
    for name in ("lite.toml", "paper.toml"):
        cfg = load_config(root / name).validate()
        assert cfg.preset in ("lite", "paper")


def test_training_chooses_its_device_as_colorize_does(tmp_path):
    """One device choice (inference.resolve_device): an unknown device is an error, not the CPU."""
    from refcolor.train.trainer import Trainer

    cfg = TrainConfig(out=str(tmp_path / "run"), device="tpu")
    with pytest.raises(RefcolorError, match="unknown device 'tpu'; use auto, cpu or cuda"):
        Trainer(cfg, progress=False)
    assert not (tmp_path / "run").exists()


def test_bad_crops_are_named():
    with pytest.raises(RefcolorError, match="crop 64x60 must be multiples of 8"):
        TrainConfig(height=128, width=128, crop_height=64, crop_width=60).validate()
    with pytest.raises(RefcolorError, match="crop 136x64 must be within the training size 128x128"):
        TrainConfig(height=128, width=128, crop_height=136, crop_width=64).validate()
