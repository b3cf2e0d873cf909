"""timm's spirit: one training step on a tiny clip of 3 blocks gives a non-zero gradient to every
parameter that inference uses (the shipped weights once left the linkage storage at init)."""
import pytest
import torch

from refcolor.train.trainer import Trainer
from test_train_resume import tiny_config


# the lite preset as it ships (head 2 and the correspondence CNN-Transformer blocks off), and with them on
@pytest.mark.parametrize("parts", [{}, {"double_head": True, "num_ct_blocks": 1}], ids=["preset", "paper-parts"])
def test_one_step_reaches_every_inference_parameter(tmp_path, parts):
    cfg = tiny_config(tmp_path, "grad", clip_len=6, block_size=2, w_adv=0.0, w_perc=0.0, ema_decay=0.0,
                      freeze_backbone=[], model={"pretrained": False, **parts})
    trainer = Trainer(cfg, progress=False)
    batch = next(trainer._loader(0))
    assert batch["rgb"].shape[1] == 6  # 3 blocks of 2: the memory written by block 2 is read by block 3
    trainer._set_train_mode()
    total, terms, _ = trainer.losses(batch)
    total.backward()
    net = trainer.model
    used = [n for n, p in net.named_parameters()]
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing
    # the parts the issue names, explicitly
    named = ["linkage.store.q.weight", "linkage.store_norm.weight", "colorization.to_ab.weight",
             "correspondence.tau_logit", "correspondence.key_mix_logit", "correspondence.key_proj.0.weight"]
    if parts:
        named += ["correspondence.alpha", "correspondence.head2.weight", "correspondence.blocks.0.cnn_to_tokens.0.weight"]
    for name in named:
        assert name in used, name


def test_train_only_trains_the_named_part_alone(tmp_path):
    """train_only = ["linkage."]: one step changes the linkage memory's weights and nothing else."""
    cfg = tiny_config(tmp_path, "only", clip_len=6, block_size=2, w_adv=0.0, w_perc=0.0, ema_decay=0.0,
                      freeze_backbone=[], train_only=["linkage."])
    trainer = Trainer(cfg, progress=False)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer._set_train_mode()
    trainer._train_step(next(trainer._loader(0)))
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p)}
    assert changed and all(n.startswith("linkage.") for n in changed), changed
    assert "linkage.store.q.weight" in changed


def test_train_only_naming_nothing_is_refused(tmp_path):
    import pytest

    from refcolor.errors import RefcolorError

    cfg = tiny_config(tmp_path, "none", train_only=["no_such_part."])
    with pytest.raises(RefcolorError, match="train_only"):
        Trainer(cfg, progress=False)
