"""Readers of data on disk: rating manifests, RELATE, captions, timbre ratings, Audealize maps, labelled
audio (TinySOL) and the instrument ontology. Every bad row is an error naming file, line and column."""
