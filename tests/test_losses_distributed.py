"""gather_distributed=True on two CPU processes (gloo) against the naive global-batch loss."""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))

WORLD = 2


def _worker(rank: int, init_file: str) -> None:
    from naive import naive_contrastive

    from scalecontrast.losses import MultiScaleContrastiveLoss

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        g = torch.Generator().manual_seed(0)
        per_rank = 2
        # every class exactly once per 2x2 cell grid: sampling takes every pixel at both scales
        grids = torch.stack([torch.randperm(4, generator=g).view(2, 2) for _ in range(WORLD * per_rank)])
        labels = grids.repeat_interleave(4, 1).repeat_interleave(4, 2)  # (4, 8, 8)
        labels[-1] = torch.where(labels[-1] == 3, 255, labels[-1])  # rank 1 holds one fewer pair
        high = torch.randn(WORLD * per_rank, 5, 8, 8, generator=g, dtype=torch.float64)
        low = torch.randn(WORLD * per_rank, 5, 2, 2, generator=g, dtype=torch.float64)
        local = slice(rank * per_rank, (rank + 1) * per_rank)

        loss_fn = MultiScaleContrastiveLoss(scale_weights=(1.0, 0.0), min_views=1, gather_distributed=True)
        ours_high = high[local].clone().requires_grad_(True)
        ours_low = low[local].clone().requires_grad_(True)
        ours = loss_fn([ours_high, ours_low], labels[local])
        ours.backward()

        def pixels(emb, lab):
            size = emb.shape[-2:]
            lab = F.interpolate(lab[:, None].float(), size=size, mode="nearest").long().flatten()
            keep = lab != 255
            return emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1])[keep], lab[keep]

        ref_high = high.clone().requires_grad_(True)
        ref_low = low.clone().requires_grad_(True)
        all_high, all_high_y = pixels(ref_high, labels)
        all_low, all_low_y = pixels(ref_low, labels)
        n_local = per_rank * 64 - 16 * rank  # rank 1's last image has 16 ignored pixels
        rows = slice(rank * 128, rank * 128 + n_local)
        self_index = torch.arange(n_local) + rank * 128
        within = naive_contrastive(all_high[rows], all_high_y[rows], all_high, all_high_y, self_index=self_index)
        # the 2x2 maps are valid only where a class has >= min_views=1 pixel: all of them
        cross = naive_contrastive(all_high[rows], all_high_y[rows], all_low, all_low_y)
        ref = within + cross
        ref.backward()
        torch.testing.assert_close(ours.detach(), ref.detach(), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(ours_high.grad, ref_high.grad[local], rtol=1e-8, atol=1e-12)
        torch.testing.assert_close(ours_low.grad, ref_low.grad[local], rtol=1e-8, atol=1e-12)
        # the contrast set really spans both processes: it differs from the local-only loss
        local_only = MultiScaleContrastiveLoss(scale_weights=(1.0, 0.0), min_views=1)
        assert not torch.isclose(local_only([high[local], low[local]], labels[local]), ours.detach())
    finally:
        dist.destroy_process_group()


def test_gather_distributed_two_processes(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"),), nprocs=WORLD, join=True)


def _memory_worker(rank: int, init_file: str) -> None:
    from naive import naive_contrastive

    from scalecontrast.losses import MultiScaleContrastiveLoss

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        g = torch.Generator().manual_seed(0)
        per_rank = 2
        grids = torch.stack([torch.randperm(4, generator=g).view(2, 2) for _ in range(WORLD * per_rank)])
        labels = grids.repeat_interleave(4, 1).repeat_interleave(4, 2)  # (4, 8, 8): every pixel is sampled
        labels[-1] = torch.where(labels[-1] == 3, 255, labels[-1])
        steps = [(torch.randn(WORLD * per_rank, 5, 8, 8, generator=g, dtype=torch.float64),
                  torch.randn(WORLD * per_rank, 5, 2, 2, generator=g, dtype=torch.float64)) for _ in range(2)]
        local = slice(rank * per_rank, (rank + 1) * per_rank)
        loss_fn = MultiScaleContrastiveLoss(scale_weights=(1.0, 0.0), min_views=1, gather_distributed=True,
                                            memory_size=64, num_classes=4)
        loss_fn([steps[0][0][local], steps[0][1][local]], labels[local])

        def pixels(emb, lab):
            lab = F.interpolate(lab[:, None].float(), size=emb.shape[-2:], mode="nearest").long().flatten()
            keep = lab != 255
            return emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1])[keep], lab[keep]

        # the queue holds every process's samples of step 1 (the same on both processes)
        memory = loss_fn.memory["0"]
        first, first_y = pixels(steps[0][0], labels)
        assert memory.count.tolist() == torch.bincount(first_y, minlength=4).tolist()
        stored, stored_y, filled = memory.contents()
        as_set = sorted(zip(stored_y[filled].tolist(), map(tuple, stored[filled].tolist())))
        expected = sorted(zip(first_y.tolist(), map(tuple, F.normalize(first, dim=1).tolist())))
        assert len(as_set) == len(expected)
        for (ya, a), (yb, b) in zip(as_set, expected):
            assert ya == yb and torch.allclose(torch.tensor(a), torch.tensor(b), rtol=0, atol=1e-12)
        gathered = [torch.empty_like(memory.feats) for _ in range(WORLD)]
        dist.all_gather(gathered, memory.feats)
        assert torch.equal(gathered[0], gathered[1])

        # step 2: contrast set = every process's samples + the queue; the gradient reaches this step only
        high = steps[1][0][local].clone().requires_grad_(True)
        low = steps[1][1][local].clone().requires_grad_(True)
        ours = loss_fn([high, low], labels[local])
        ours.backward()
        ref_high = steps[1][0].clone().requires_grad_(True)
        ref_low = steps[1][1].clone().requires_grad_(True)
        all_high, all_y = pixels(ref_high, labels)
        all_low, all_low_y = pixels(ref_low, labels)
        n_local = per_rank * 64 - 16 * rank
        rows = slice(rank * 128, rank * 128 + n_local)
        self_index = torch.arange(n_local) + rank * 128
        within = naive_contrastive(all_high[rows], all_y[rows], torch.cat([all_high, first]),
                                   torch.cat([all_y, first_y]), self_index=self_index)
        ref = within + naive_contrastive(all_high[rows], all_y[rows], all_low, all_low_y)
        ref.backward()
        torch.testing.assert_close(ours.detach(), ref.detach(), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(high.grad, ref_high.grad[local], rtol=1e-8, atol=1e-12)
        torch.testing.assert_close(low.grad, ref_low.grad[local], rtol=1e-8, atol=1e-12)
    finally:
        dist.destroy_process_group()


def test_memory_is_filled_from_every_process(tmp_path):
    mp.spawn(_memory_worker, args=(str(tmp_path / "init"),), nprocs=WORLD, join=True)
