"""torchrun / DistributedDataParallel training: 2 gloo ranks on this CPU against a single-process reference."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

from pointkd.config import ConfigError, load_config
from pointkd.data import TrainAugment
from pointkd.data.synthetic import make_synthetic
from pointkd.train.distributed import DistContext, TrainStep, local_batch_size, wrap_for_training
from pointkd.train.trainer import build_model, build_objective, cosine_lr, rank_order, rank_step_seed, train
from serving.launch import free_port

OVERRIDES = [
    "data.num_points=64",
    "train.epochs=1",
    "train.batch_size=8",
    "train.max_batches_per_epoch=3",
    "model.overrides={widths: [8, 16], k: 6, mlp: [16]}",
]


def _data():
    return make_synthetic(num_points=64, seed=3, train_per_class=6, test_per_class=2)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    os.environ["LOCAL_RANK"] = str(rank)
    torch.set_num_threads(1)
    result = train(load_config("quickstart", OVERRIDES), out, data=_data(), progress=False, log=lambda *_: None)
    params = {k: v.detach().clone() for k, v in result.model.named_parameters()}
    torch.save({"params": params, "history": result.history}, os.path.join(out, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()


def _reference(world: int) -> tuple[dict[str, torch.Tensor], float]:
    """One process, the same global batches: each rank's shard forwarded on its own (BatchNorm per shard, as
    DDP without SyncBatchNorm), the mean of the shard losses back-propagated."""
    cfg = load_config("quickstart", OVERRIDES)
    data = _data()
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, data.num_classes)
    objective = build_objective(cfg, model, data.classes)
    t = cfg.train
    optimizer = torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    augment = TrainAugment(num_points=cfg.data.num_points)
    per_rank, steps, losses = t.batch_size // world, t.max_batches_per_epoch, []
    for b in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(b, steps, t.lr, t.lr_min)
        optimizer.zero_grad(set_to_none=True)
        for rank in range(world):
            ctx = DistContext(rank=rank, world_size=world)
            sel = rank_order(len(data.train_y), cfg, ctx, 0)[b * per_rank : (b + 1) * per_rank]
            seed = rank_step_seed(cfg.seed, 0, b, ctx)
            x = augment(data.train_x[sel], torch.Generator().manual_seed(seed))
            torch.manual_seed(seed)
            out = objective(model, x, data.train_y[sel])
            (out.loss / world).backward()
            losses.append(float(out.loss))
        optimizer.step()
    return {k: v.detach() for k, v in model.named_parameters()}, sum(losses) / len(losses)


def test_two_gloo_ranks_hold_identical_weights_equal_to_a_single_process_run(tmp_path):
    mp.start_processes(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["params"].keys() == r1["params"].keys()
    for name, value in r0["params"].items():
        assert torch.equal(value, r1["params"][name]), name  # DDP keeps the replicas bit-identical
    ref, ref_loss = _reference(2)
    for name, value in r0["params"].items():
        assert torch.allclose(value, ref[name], atol=1e-5, rtol=1e-4), name
    assert r0["history"][0]["train_loss"] == pytest.approx(ref_loss, rel=1e-5)
    assert r1["history"][0]["train_loss"] == r0["history"][0]["train_loss"]  # all-reduced over the ranks
    assert "test_oa" in r0["history"][0] and "test_oa" not in r1["history"][0]  # only rank 0 evaluates
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["epoch"] == 1  # rank 0 alone writes logs and checkpoints


def test_torchrun_cli(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", str(free_port())]
    cmd += ["-m", "pointkd", "train", "--config", "quickstart", "--data", "synthetic", "--out", str(tmp_path)]
    cmd += ["--no-progress", "--threads", "1"] + [a for o in OVERRIDES for a in ("--set", o)]
    env = {**os.environ, "POINTKD_JEMALLOC": "0", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "distributed: 2 ranks x 4 clouds per step" in out.stdout
    assert out.stdout.count("best test OA") == 1  # rank 0 logs, rank 1 is silent
    assert (tmp_path / "best.pt").is_file() and len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1


def test_distributed_settings_are_checked():
    with pytest.raises(ConfigError, match="divide evenly over 3 ranks"):
        local_batch_size(32, DistContext(rank=0, world_size=3))
    with pytest.raises(ConfigError, match="SyncBatchNorm"):
        wrap_for_training(TrainStep(torch.nn.Linear(2, 2), torch.nn.Identity()), DistContext(), sync_bn=True)
    assert local_batch_size(32, DistContext()) == 32
