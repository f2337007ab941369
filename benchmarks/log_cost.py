"""What one ``self.log`` call costs a training step: a tiny LightningModule (one Linear layer, so the
step is almost only Lightning's own work) logging the loss alone vs the loss + 17 scalars per step
(as many as the MS+CS loss terms), ``--rounds`` runs of each, interleaved. Prints the median step times
and the cost per call.

    python benchmarks/log_cost.py [--steps 400] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import lightning as L
import torch


class Tiny(L.LightningModule):
    def __init__(self, extra_terms: int) -> None:
        super().__init__()
        self.extra_terms = extra_terms
        self.lin = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        loss = self.lin(batch).pow(2).mean()
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=len(batch))
        if self.extra_terms:
            terms = {f"train/term_{k}": loss.detach() * k for k in range(self.extra_terms)}
            self.log_dict(terms, on_step=True, on_epoch=False, batch_size=len(batch))
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class StepTimes(L.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []
        self.last: float | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self.last is not None:
            self.times.append(now - self.last)
        self.last = now


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--terms", type=int, default=17)
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    medians: dict[int, list[float]] = {0: [], args.terms: []}
    for _ in range(args.rounds):
        for n in medians:
            data = torch.utils.data.DataLoader(torch.randn(8 * args.steps, 4), batch_size=8)
            timer = StepTimes()
            L.Trainer(max_steps=args.steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=[timer], log_every_n_steps=10).fit(Tiny(n), data)
            medians[n].append(statistics.median(timer.times[20:]))
    alone, more = statistics.median(medians[0]), statistics.median(medians[args.terms])
    print(f"| step | median (ms) |\n|---|---|\n| loss logged | {alone * 1e3:.2f} |\n"
          f"| loss + {args.terms} terms logged | {more * 1e3:.2f} |\n\n"
          f"{(more - alone) * 1e3:.2f} ms per step, {(more - alone) / args.terms * 1e3:.3f} ms per self.log call; "
          f"load average {os.getloadavg()[0]:.2f}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
