"""Adapters for other training frameworks. Each lives in its own module and imports its framework
only when that module is imported (optional dependencies):

- :mod:`scalecontrast.integrations.transformers`: :class:`~scalecontrast.integrations.transformers.ContrastiveTrainer`,
  a Hugging Face ``transformers.Trainer`` that adds multi-scale and cross-scale contrast
  (``pip install 'scalecontrast[transformers]'``).
"""
