"""DDP on CPU: two gloo processes hold identical weights, equal to one process with the same global batch."""
import socket

import torch
import torch.multiprocessing as mp

from refcolor.checkpoint import read_checkpoint
from refcolor.train.state import latest_checkpoint
from test_train_resume import tiny_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, cfg, result_dir: str) -> None:
    from refcolor.train.trainer import train

    result = train(cfg, progress=False, rank=rank, world_size=world, dist_url=f"tcp://127.0.0.1:{port}")
    torch.save({k: v.detach().clone() for k, v in result.model.state_dict().items()}, f"{result_dir}/rank{rank}.pt")
    torch.save([{k: v for k, v in row.items() if isinstance(v, (int, float))} for row in result.history], f"{result_dir}/history{rank}.pt")
    import torch.distributed as dist

    dist.destroy_process_group()


def test_two_process_ddp_matches_one_process(tmp_path):
    steps = 2
    cfg2 = tiny_config(tmp_path, "ddp", steps=steps, batch_size=1, deterministic=False)
    mp.spawn(_worker, args=(2, _free_port(), cfg2, str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    history = torch.load(tmp_path / "history0.pt", weights_only=True)
    assert all(torch.equal(r0[k], r1[k]) for k in r0), "ranks diverged"
    _, saved, meta = read_checkpoint(latest_checkpoint(tmp_path / "ddp") / "model.safetensors")  # rank 0 writes
    assert meta["step"] == str(steps) and all(torch.equal(saved[k], r0[k]) for k in r0)

    from refcolor.train.trainer import train

    single = train(tiny_config(tmp_path, "single", steps=steps, batch_size=2, deterministic=False), progress=False)
    one = single.model.state_dict()
    diffs = torch.cat([(one[k].float() - r0[k].float()).abs().flatten() for k in r0 if r0[k].is_floating_point()])
    lr = 1e-4
    # Same forward: the first step's loss (rank-averaged) equals the one-process loss on both clips.
    assert abs(history[0]["total"] - single.history[0]["total"]) < 1e-5 * abs(single.history[0]["total"])
    # Same updates up to float noise. Adam turns the pure-noise gradients of parameters whose true
    # gradient is 0 (conv biases before an InstanceNorm) into +-lr steps, so a few weights may
    # differ by up to 2 lr per step; a missing or wrong all-reduce would move the bulk by ~lr.
    assert torch.quantile(diffs, 0.5) < 1e-6
    assert torch.quantile(diffs, 0.99) < 0.1 * lr
    assert diffs.max() <= 2 * lr * steps + 1e-6
