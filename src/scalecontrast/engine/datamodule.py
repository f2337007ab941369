"""The LightningDataModule: data sets by name, the paper's augmentation, loaders."""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset, default_collate

from scalecontrast.data import DATASETS, eval_transforms, get_dataset, train_transforms
from scalecontrast.data.base import CHECKS
from scalecontrast.data.download import prepare_data
from scalecontrast.data.io import read_size
from scalecontrast.data.synthetic import write_synthetic

# prepare_data and write_synthetic are the data layer's; the command line reaches them through the engine
__all__ = ["SegmentationDataModule", "prepare_data", "write_synthetic"]


class SegmentationDataModule(L.LightningDataModule):
    """Train / val / test loaders over :func:`scalecontrast.data.get_dataset`.

    Images come out in [0, 1] (not normalised: the :class:`SegmentationModule` normalises with
    the model's statistics); evaluation keeps the original size so scores use the original
    labels.

    Args:
        dataset: a name known to ``get_dataset`` ("synthetic", "camvid", "cityscapes", ...).
        root: the data folder (ignored by "synthetic").
        train_split, val_split, test_split: split names.
        batch_size: training batch per process (the global batch is ``batch_size x devices``).
        eval_batch_size: validation/test batch per process. Evaluation keeps every image's original
            size, so a batch > 1 needs images of one size (CamVid: all 360x480); with mixed sizes
            ``setup`` (or, for data sets without files, the first such batch) raises an error that
            names the sizes and asks for ``eval_batch_size=1``, which handles any size.
        num_workers: loader processes.
        crop_size: the training crop, ``[height, width]``, or one int (or ``[n]``) for a square.
        scale_range, aspect_range: ``[min, max]`` with ``0 < min <= max``.
        crop_max_ratio, hflip, color_jitter: training augmentation (see
            :func:`scalecontrast.data.train_transforms`); ``0 < crop_max_ratio <= 1``,
            ``0 <= hflip <= 1``.
        check: start-up check of every file pair when the data sets are built: ``"header"``
            (default; headers only: readable, sizes agree, single-channel masks, not truncated;
            about 0.2 s for CamVid's 701 pairs), ``"full"`` (decodes everything and checks label
            values, seconds per thousand images), ``"none"``. See
            :class:`scalecontrast.data.SegmentationDataset`. Not used by "synthetic".
        dataset_kwargs: extra keyword arguments for every split (e.g. ``{"experiment": 2}`` for
            CaDIS, ``{"size": 96}`` for synthetic); ``train_kwargs``/``eval_kwargs`` per phase.
        train_limit, eval_limit: use only the first N items (quick runs and tests).
        seed: seed of the training order and of the augmentation (default: the run's seed,
            ``seed_everything``'s, else 0). Item ``i`` of epoch ``e`` is augmented with its own seed
            derived from ``(seed, e, i)``, and the training loader is a ``torchdata``
            ``StatefulDataLoader`` whose position is saved in checkpoints, so a resumed run sees exactly
            the batches of an uninterrupted one, whatever ``num_workers``.
    """

    def __init__(
        self,
        dataset: str = "synthetic",
        root: str | None = None,
        *,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str = "test",
        batch_size: int = 8,
        eval_batch_size: int = 1,
        num_workers: int = 0,
        crop_size: int | list[int] = [512, 512],  # noqa: B006 - shown as the default by the CLI
        scale_range: list[float] = [0.5, 2.0],  # noqa: B006
        aspect_range: list[float] = [0.9, 1.1],  # noqa: B006
        crop_max_ratio: float = 0.75,
        hflip: float = 0.5,
        color_jitter: bool = True,
        dataset_kwargs: dict[str, Any] | None = None,
        train_kwargs: dict[str, Any] | None = None,
        eval_kwargs: dict[str, Any] | None = None,
        train_limit: int | None = None,
        eval_limit: int | None = None,
        pin_memory: bool = False,
        check: Literal["none", "header", "full"] = "header",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self._validate()
        self.datasets: dict[str, Dataset] = {}

    def _validate(self) -> None:
        """Check the options up front (clear errors instead of failures deep in a loader), and
        normalise ``crop_size`` to ``[height, width]``."""
        hp = self.hparams
        if str(hp.dataset).lower().replace("-", "_") not in DATASETS:
            names = ", ".join(sorted(DATASETS))
            raise ValueError(f"data.dataset: unknown dataset {hp.dataset!r}; valid names: {names}")
        hp.crop_size = _crop_size(hp.crop_size)
        hp.scale_range = _range("scale_range", hp.scale_range)
        hp.aspect_range = _range("aspect_range", hp.aspect_range)
        if not _is_number(hp.crop_max_ratio) or not 0 < hp.crop_max_ratio <= 1:
            raise ValueError(f"data.crop_max_ratio must be in (0, 1], got {hp.crop_max_ratio!r}")
        if not _is_number(hp.hflip) or not 0 <= hp.hflip <= 1:
            raise ValueError(f"data.hflip is a probability in [0, 1], got {hp.hflip!r}")
        for name in ("batch_size", "eval_batch_size"):
            if not _is_int(hp[name]) or hp[name] < 1:
                raise ValueError(f"data.{name} must be an integer >= 1, got {hp[name]!r}")
        if not _is_int(hp.num_workers) or hp.num_workers < 0:
            raise ValueError(f"data.num_workers must be an integer >= 0, got {hp.num_workers!r}")
        for name in ("train_limit", "eval_limit"):
            if hp[name] is not None and (not _is_int(hp[name]) or hp[name] < 1):
                raise ValueError(f"data.{name} must be an integer >= 1 or null (all items), got {hp[name]!r}")
        if hp.check not in CHECKS:
            raise ValueError(f"data.check must be one of {', '.join(CHECKS)}, got {hp.check!r}")

    # ----------------------------------------------------------------------------------------
    def make_dataset(self, split: str, train: bool = False) -> Dataset:
        """The data set of ``split`` with the training or evaluation transform."""
        hp = self.hparams
        if train:
            transform = train_transforms(
                tuple(hp.crop_size), scale_range=tuple(hp.scale_range), aspect_range=tuple(hp.aspect_range),
                crop_max_ratio=hp.crop_max_ratio, hflip=hp.hflip, color_jitter=hp.color_jitter,
                mean=None, std=None)
        else:
            transform = eval_transforms(mean=None, std=None)
        kw = {**(hp.dataset_kwargs or {}), **((hp.train_kwargs if train else hp.eval_kwargs) or {})}
        if str(hp.dataset).lower() != "synthetic":  # file-backed: the start-up check
            kw.setdefault("check", hp.check)
        ds = get_dataset(hp.dataset, hp.root, split, transform=transform, **kw)
        limit = hp.train_limit if train else hp.eval_limit
        if limit is not None and limit < len(ds):
            sub = Subset(ds, range(int(limit)))
            sub.classes, sub.palette = ds.classes, ds.palette  # type: ignore[attr-defined]
            sub.class_groups = getattr(ds, "class_groups", None)  # type: ignore[attr-defined]
            ds = sub
        return ds

    def _get(self, key: str, split: str, train: bool = False) -> Dataset:
        if key not in self.datasets:
            ds = self.make_dataset(split, train=train)
            if not train and self.hparams.eval_batch_size > 1:
                _check_one_size(ds, split, self.hparams.eval_batch_size)
            self.datasets[key] = ds
        return self.datasets[key]

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if stage in (None, "fit"):
            self._get("train", hp.train_split, train=True)
            self._get("val", hp.val_split)
        if stage == "validate":
            self._get("val", hp.val_split)
        if stage in (None, "test", "predict"):
            self._get("test", hp.test_split)

    # ----------------------------------------------------------------------------------------
    @property
    def _any(self) -> Dataset:
        for key in ("val", "test", "train"):
            if key in self.datasets:
                return self.datasets[key]
        return self._get("val", self.hparams.val_split)

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self._any.classes]  # type: ignore[attr-defined]

    @property
    def palette(self) -> list[list[int]]:
        return [[int(v) for v in c] for c in self._any.palette]  # type: ignore[attr-defined]

    @property
    def class_groups(self) -> dict[str, list[int]] | None:
        """Groups of class indices the dataset scores separately (CaDIS), else ``None``."""
        groups = getattr(self._any, "class_groups", None)
        return {str(k): [int(i) for i in v] for k, v in groups.items()} if groups else None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    # ----------------------------------------------------------------------------------------
    def _loader(self, ds: Dataset, batch_size: int, train: bool, split: str = "") -> DataLoader:
        workers = int(self.hparams.num_workers)
        collate = None if train or batch_size == 1 else SameSizeCollate(split)
        # A generator of its own: creating the loader's iterator must not draw from the global RNG
        # (validation would shift the training's random stream, and a resumed run would differ).
        return DataLoader(ds, batch_size=batch_size, shuffle=train, drop_last=train and len(ds) >= batch_size,
                          num_workers=workers, pin_memory=self.hparams.pin_memory,
                          persistent_workers=workers > 0, collate_fn=collate,
                          generator=torch.Generator().manual_seed(0))

    def train_dataloader(self) -> DataLoader:
        from torchdata.stateful_dataloader import StatefulDataLoader

        ds = self._get("train", self.hparams.train_split, True)
        seed = self.train_seed
        trainer = self.trainer
        replicas, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        sampler = EpochSampler(ds, num_replicas=replicas, rank=rank, seed=seed)
        workers = int(self.hparams.num_workers)
        bs = self.hparams.batch_size
        return StatefulDataLoader(SeededSamples(ds, seed), batch_size=bs, sampler=sampler,
                                  drop_last=len(sampler) >= bs, num_workers=workers,
                                  pin_memory=self.hparams.pin_memory, persistent_workers=workers > 0,
                                  generator=torch.Generator().manual_seed(seed))

    @property
    def train_seed(self) -> int:
        """``seed``, else the run's (``PL_GLOBAL_SEED``, set by ``seed_everything``), else 0."""
        if self.hparams.get("seed") is not None:
            return int(self.hparams.seed)
        return int(os.environ.get("PL_GLOBAL_SEED", 0))

    def val_dataloader(self) -> DataLoader:
        split = self.hparams.val_split
        return self._loader(self._get("val", split), self.hparams.eval_batch_size, False, split)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def test_dataloader(self) -> DataLoader:
        split = self.hparams.test_split
        return self._loader(self._get("test", split), self.hparams.eval_batch_size, False, split)


# -- resumable, seeded training order ------------------------------------------------------------

def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of item ``index`` in ``epoch``."""
    return int(np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(1, np.uint64)[0] >> 1)


class SeededSamples(Dataset):
    """``dataset`` indexed by ``(epoch, index)`` (as :class:`EpochSampler` yields): the item is built with
    torch's global RNG seeded from ``(seed, epoch, index)`` (and restored afterwards), so random
    augmentation gives the same result in any process, worker or resumed run. A plain ``int`` index
    reads the item without seeding."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, int(seed)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key):
        if isinstance(key, int):
            return self.dataset[key]
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed(self.seed, epoch, index))
            return self.dataset[index]


class EpochSampler(DistributedSampler):
    """A shuffling ``DistributedSampler`` (its shard of a permutation seeded by ``seed + epoch``; Lightning
    calls ``set_epoch``) that yields ``(epoch, index)`` for :class:`SeededSamples` and is stateful (epoch and
    position) for ``StatefulDataLoader``: a run resumed mid-epoch continues where it stopped."""

    def __init__(self, dataset: Dataset, *, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=int(seed))
        self.yielded = 0
        self._resume: tuple[int, int] | None = None

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        return self._generate()

    def _generate(self) -> Iterator[tuple[int, int]]:
        # a generator: the order is drawn at the first item, after Lightning's set_epoch
        start = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            start = self._resume[1]
        self._resume = None
        epoch = self.epoch
        indices = list(super().__iter__())
        self.yielded = start
        for i in indices[start:]:
            self.yielded += 1
            yield epoch, int(i)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(self.epoch), "yielded": int(self.yielded)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, yielded = int(state["epoch"]), int(state["yielded"])
        if yielded >= len(self):  # saved at the end of an epoch: the next one starts from its beginning
            epoch, yielded = epoch + 1, 0
        self.set_epoch(epoch)
        self._resume = (epoch, yielded)


# -- option checks -----------------------------------------------------------------------------

def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _crop_size(value: Any) -> list[int]:
    """``n``, ``[n]`` (square) or ``[height, width]`` -> ``[height, width]``, positive ints."""
    size = None
    if _is_int(value):
        size = [value]
    elif isinstance(value, Sequence) and not isinstance(value, str):
        size = list(value)
    if size is not None and len(size) == 1:
        size = size * 2
    if size is None or len(size) != 2 or not all(_is_int(v) and v > 0 for v in size):
        raise ValueError(
            f"data.crop_size must be [height, width] or one int for a square crop (e.g. 512 or [512]), "
            f"positive integers; got {value!r}"
        )
    return [int(v) for v in size]


def _range(name: str, value: Any) -> list[float]:
    ok = isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2
    if not ok or not all(_is_number(v) for v in value) or not 0 < value[0] <= value[1]:
        raise ValueError(f"data.{name} must be [min, max] with 0 < min <= max, got {value!r}")
    return [float(v) for v in value]


# -- evaluation batches of one size --------------------------------------------------------------

def _mixed_sizes(split: str, sizes: dict[tuple[int, ...], str], batch_size: int) -> str:
    shown = ", ".join(f"{'x'.join(map(str, hw))} (e.g. {stem})" for hw, stem in list(sizes.items())[:5])
    more = f" and {len(sizes) - 5} more sizes" if len(sizes) > 5 else ""
    return (
        f"{split or 'evaluation'} split: images of different sizes, {shown}{more}, cannot be batched with "
        f"eval_batch_size={batch_size}: evaluation keeps each image's original size. Set eval_batch_size "
        "to 1 (--data.eval_batch_size 1), which handles any size."
    )


def _check_one_size(ds: Dataset, split: str, batch_size: int) -> None:
    """Raise if a file-backed evaluation set holds images of several sizes (file headers only)."""
    base, indices = (ds.dataset, ds.indices) if isinstance(ds, Subset) else (ds, None)
    samples = getattr(base, "samples", None)
    if samples is None:  # no files (synthetic): SameSizeCollate catches it per batch
        return
    if indices is not None:
        samples = [samples[i] for i in indices]
    sizes: dict[tuple[int, ...], str] = {}
    for s in samples:
        sizes.setdefault(read_size(s.image), s.stem)
    if len(sizes) > 1:
        raise ValueError(_mixed_sizes(split, sizes, batch_size))


class SameSizeCollate:
    """``default_collate`` for evaluation batches, with an error naming the sizes (and stems) when
    the items of one batch differ in size, instead of ``torch.stack``'s bare one."""

    def __init__(self, split: str = "") -> None:
        self.split = split

    def __call__(self, items: list[dict[str, Any]]) -> Any:
        sizes: dict[tuple[int, ...], str] = {}
        for item in items:
            sizes.setdefault(tuple(item["image"].shape[-2:]), str(item.get("stem", "?")))
        if len(sizes) > 1:
            raise ValueError(_mixed_sizes(self.split, sizes, len(items)))
        return default_collate(items)
