"""Transforms of rated pairs (e.g. NV-text variants of captions)."""
