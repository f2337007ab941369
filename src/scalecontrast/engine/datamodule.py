"""The LightningDataModule: data sets by name, the paper's augmentation, loaders."""

from __future__ import annotations

from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset, Subset

from scalecontrast.data import eval_transforms, get_dataset, train_transforms

__all__ = ["SegmentationDataModule"]


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
        eval_batch_size: validation/test batch per process (1 handles images of any size).
        num_workers: loader processes.
        crop_size, scale_range, aspect_range, crop_max_ratio, hflip, color_jitter: training
            augmentation (see :func:`scalecontrast.data.train_transforms`).
        dataset_kwargs: extra keyword arguments for every split (e.g. ``{"experiment": 2}`` for
            CaDIS, ``{"size": 96}`` for synthetic); ``train_kwargs``/``eval_kwargs`` per phase.
        train_limit, eval_limit: use only the first N items (quick runs and tests).
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
        crop_size: list[int] = [512, 512],  # noqa: B006 - shown as the default by the CLI
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
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.datasets: dict[str, Dataset] = {}

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
            self.datasets[key] = self.make_dataset(split, train=train)
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
    def _loader(self, ds: Dataset, batch_size: int, train: bool) -> DataLoader:
        workers = int(self.hparams.num_workers)
        return DataLoader(ds, batch_size=batch_size, shuffle=train, drop_last=train and len(ds) >= batch_size,
                          num_workers=workers, pin_memory=self.hparams.pin_memory,
                          persistent_workers=workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._get("train", self.hparams.train_split, True), self.hparams.batch_size, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._get("val", self.hparams.val_split), self.hparams.eval_batch_size, False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._get("test", self.hparams.test_split), self.hparams.eval_batch_size, False)
