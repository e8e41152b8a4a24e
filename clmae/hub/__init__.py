"""Pretrained weights: save, publish, download (pinned and verified), load, convert and extract features."""

from .download import ChecksumError
from .load import load_pretrained, load_pretraining
from .push import push_to_hub
from .registry import list_pretrained
from .save import save_pretrained

__all__ = ["ChecksumError", "list_pretrained", "load_pretrained", "load_pretraining", "push_to_hub", "save_pretrained"]
