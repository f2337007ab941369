"""benchmarks/gpu_check.py keeps working: its --smoke run (tiny models, CPU) prints all three tables,
and its sync counter counts every sync warning (CUDA's sync debug mode itself needs a GPU)."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import gpu_check  # noqa: E402


def _table_rows(text: str, heading: str) -> list[str]:
    block = text.split(heading, 1)[1].split("\n## ", 1)[0]
    return [line for line in block.splitlines() if line.startswith("|")][2:]  # past header + rule


def test_smoke_run_prints_the_three_tables(capsys):
    gpu_check.main(["--smoke", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "torch " + torch.__version__ in out
    assert "hrnet_w48.yaml" in out and "upernet_swin_t.yaml" in out  # settings read from the configs
    assert "unreadable" not in out
    training = _table_rows(out, "## (a)")
    assert len(training) == 4  # 2 recipes x (CE, MS+CS)
    for row in training:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[5]) > 0, row  # steps/s
    assert sum("MS+CS" in row for row in training) == 2
    loss = _table_rows(out, "## (b)")
    assert len(loss) == 1 and loss[0].startswith("| 200 |")
    syncs = _table_rows(out, "## (c)")
    assert len(syncs) == 4 and all("n/a" in row for row in syncs)  # no CUDA here
    assert "error" not in out.lower() and "OOM" not in out
    assert "section (a):" in out and "section (b):" in out and "total:" in out


def test_sync_counter_counts_each_sync_warning(monkeypatch):
    modes = []
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", modes.append)
    counter = gpu_check.SyncCounter(torch.device("cuda"))
    with counter:
        for _ in range(3):  # the same source line each time: all three count
            warnings.warn("called a synchronizing CUDA operation", UserWarning, stacklevel=1)
        warnings.warn("something else", UserWarning, stacklevel=1)
    assert modes == ["warn", "default"]
    assert counter.count == 3
    assert counter.describe().startswith("tests/test_gpu_check.py:") and counter.describe().endswith(" x3")
    assert gpu_check.SyncCounter(torch.device("cpu")).describe() == "n/a"


def test_out_of_memory_is_reported_and_retried_with_half_the_batch(monkeypatch, capsys):
    batches = []

    def oom(recipe, contrast, batch, args, device):
        batches.append(batch)
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(gpu_check, "train_setting", oom)
    gpu_check.main(["--smoke", "--device", "cpu", "--recipes", "cityscapes", "--sizes", "50"])
    out = capsys.readouterr().out
    assert batches == [2, 1, 2, 1]  # CE, then MS+CS: each tried at batch 2, then 1
    training = _table_rows(out, "## (a)")
    assert len(training) == 4 and all("| OOM |" in row for row in training)
    assert all("OOM" in row for row in _table_rows(out, "## (c)"))
    assert _table_rows(out, "## (b)")[0].startswith("| 50 | ")  # the other sections still run
