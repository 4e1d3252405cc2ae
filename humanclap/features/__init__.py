"""Clip features computed once: the on-disk feature cache and the loaders that fill and read it.

A clip's CLAP input features depend only on the clip and the featurizer, never on the weights, so
training epochs and probe passes after the first read them from disk instead of decoding, resampling
and computing log-mels again (docs/data.md#feature-cache).
"""

from humanclap.features.clips import ClipFeatures
from humanclap.features.disk import cache_root, cache_usage
from humanclap.features.identity import clip_identity
from humanclap.features.loader import feature_batches
from humanclap.features.workers import resolve_num_workers

__all__ = [
    "ClipFeatures",
    "cache_root",
    "cache_usage",
    "clip_identity",
    "feature_batches",
    "resolve_num_workers",
]
