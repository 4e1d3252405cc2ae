"""One embedding per unique clip and per unique text, shared by all probes of an evaluation.

Only what it has not seen is embedded, split across DDP ranks and gathered on every rank; non-finite
embeddings are refused. See docs/probes.md#embedding-cache.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from humanclap.backbones.embedder import Embedder
from humanclap.data.pairs import AudioStore
from humanclap.distributed import rank_and_world
from humanclap.errors import NonFiniteError
from humanclap.features.clips import ClipFeatures
from humanclap.features.loader import feature_batches
from humanclap.probes.sharded import embed_sharded_local

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AudioRef:
    """A clip to embed: ``store.load(key, sample_rate)``. Equal refs are embedded once."""

    store: AudioStore
    key: str


@dataclass
class ProbeInputs:
    """What a probe will ask for, so an evaluation can embed everything in one pass up front."""

    audio: list[AudioRef]
    texts: list[str]


class EmbeddingCache:
    """Embedder with memory: rows are computed once per evaluation and reused by every probe.

    Args:
        embedder: the model (``embed_audio`` / ``embed_text``).
        batch_size: inputs per model call.
        progress: show tqdm bars (rank 0) when embedding more than a batch.
        feature_cache: root of the on-disk feature cache (:mod:`humanclap.features`), or ``None``.
        num_workers: DataLoader workers that load and featurise clips the feature cache does not
            hold yet; a pass over cached clips reads them in this process.

    Stored clips (``audio``) of a model with ``featurizer`` and ``embed_audio_features`` (every
    ``ClapBackbone``) go through :class:`humanclap.features.ClipFeatures`; other embedders get
    waveforms.
    """

    def __init__(
        self,
        embedder: Embedder,
        batch_size: int = 32,
        progress: bool = False,
        feature_cache: str | Path | None = None,
        num_workers: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.embedder = embedder
        self.batch_size = batch_size
        self.progress = progress
        self.num_workers = num_workers
        self.clips: ClipFeatures | None = None
        if hasattr(embedder, "embed_audio_features") and hasattr(embedder, "featurizer"):
            self.clips = ClipFeatures(embedder.featurizer, feature_cache)
        self._audio: dict[Hashable, torch.Tensor] = {}
        self._text: dict[str, torch.Tensor] = {}
        self.embedded = {"audio": 0, "text": 0}
        """How many inputs this process's model calls covered (all ranks together: the sum)."""

    @property
    def sample_rate(self) -> int:
        return self.embedder.sample_rate

    # -- public requests ----------------------------------------------------------------------
    def audio(self, refs: Sequence[AudioRef]) -> torch.Tensor:
        """Rows for ``refs`` (in order), embedding the ones not seen yet."""
        if self.clips is not None:
            return self._rows(self._audio, refs, "audio", self._embed_stored)
        sample_rate = self.sample_rate
        return self._rows(
            self._audio,
            refs,
            "audio",
            self._batched(
                lambda batch: self._embed_audio(
                    [ref.store.load(ref.key, sample_rate) for ref in batch]
                )
            ),
        )

    def waves(
        self, keys: Sequence[Hashable], make: Callable[[Hashable], np.ndarray]
    ) -> torch.Tensor:
        """Rows for generated audio: ``make(key)`` builds the waveform of a key not seen yet."""
        return self._rows(
            self._audio,
            keys,
            "audio",
            self._batched(lambda batch: self._embed_audio([make(k) for k in batch])),
        )

    def text(self, texts: Sequence[str]) -> torch.Tensor:
        """Rows for ``texts`` (in order), embedding the ones not seen yet."""
        return self._rows(
            self._text,
            texts,
            "text",
            self._batched(
                lambda batch: self.embedder.embed_text(list(batch), batch_size=self.batch_size)
            ),
        )

    def prefetch(self, inputs: Iterable[ProbeInputs]) -> None:
        """Embed the union of several probes' inputs in one pass."""
        inputs = list(inputs)
        audio = [ref for item in inputs for ref in item.audio]
        texts = [text for item in inputs for text in item.texts]
        if audio:
            self.audio(audio)
        if texts:
            self.text(texts)

    # -- machinery ----------------------------------------------------------------------------
    def _embed_audio(self, waves: list[np.ndarray]) -> torch.Tensor:
        return self.embedder.embed_audio(waves, batch_size=self.batch_size)

    def _embed_stored(self, refs: list[AudioRef], tick: Callable[[int], None]) -> torch.Tensor:
        """Batches of features from the feature cache, or from worker processes for clips it lacks."""
        clips = self.clips
        assert clips is not None
        cold = clips.directory is None or not all(clips.is_cached(r.store, r.key) for r in refs)
        rows = []
        for batch in feature_batches(
            [(ref.store, ref.key) for ref in refs],
            clips,
            self.batch_size,
            num_workers=self.num_workers if cold else 0,
        ):
            rows.append(self.embedder.embed_audio_features(batch))
            tick(len(rows[-1]))
        return torch.cat(rows)

    def _batched(self, embed_batch) -> Callable:
        def embed_local(items: list, tick: Callable[[int], None]) -> torch.Tensor:
            chunks = []
            for start in range(0, len(items), self.batch_size):
                batch = items[start : start + self.batch_size]
                chunks.append(embed_batch(batch))
                tick(len(batch))
            return torch.cat(chunks)

        return embed_local

    def _rows(self, table: dict, keys: Sequence[Hashable], kind: str, embed_local) -> torch.Tensor:
        if len(keys) == 0:
            raise ValueError(f"no {kind} inputs requested")
        missing = [key for key in dict.fromkeys(keys) if key not in table]
        if missing:
            tick = self._progress(kind, len(missing))
            rows = embed_sharded_local(missing, lambda local: embed_local(local, tick))
            self._check_finite(rows, missing, kind)
            table.update(zip(missing, rows))
        return torch.stack([table[key] for key in keys])

    def _check_finite(self, rows: torch.Tensor, keys: Sequence[Hashable], kind: str) -> None:
        """Every rank holds the same gathered rows, so under DDP all ranks raise together."""
        finite = torch.isfinite(rows.reshape(len(keys), -1)).all(dim=1)
        if bool(finite.all()):
            return
        bad = [keys[index] for index in torch.nonzero(~finite).flatten().tolist()]
        name = getattr(self.embedder, "name", type(self.embedder).__name__)
        raise NonFiniteError(
            f"model '{name}' gives non-finite embeddings (NaN or inf) for {len(bad)} of {len(keys)} {kind} "
            f"inputs (e.g. {_describe(bad[0])}), so no probe can score it. Its weights are probably broken "
            f"(a diverged training run?), or the precision overflows, or those inputs hold NaN."
        )

    def _progress(self, kind: str, total: int) -> Callable[[int], None]:
        """``tick(n)``: n more inputs of ``kind`` embedded (counted; a tqdm bar on rank 0)."""
        rank, world = rank_and_world()
        bar = tqdm(
            total=total,
            desc=f"embedding {kind}",
            unit=kind == "audio" and "clip" or "text",
            disable=not self.progress or rank != 0 or total <= self.batch_size,
            leave=False,
        )

        def tick(count: int) -> None:
            self.embedded[kind] += count
            bar.update(count * world)  # rank 0 sees its share; the others advance alike
            if bar.n >= total:
                bar.close()

        return tick


def _describe(key: Hashable) -> str:
    if isinstance(key, AudioRef):
        return f"clip '{key.key}'"
    text = repr(key)
    return text if len(text) <= 80 else text[:77] + "..."


def as_cache(source: EmbeddingCache | Embedder, batch_size: int = 32) -> EmbeddingCache:
    """``source`` itself if it is a cache, else a fresh cache over the embedder."""
    return (
        source
        if isinstance(source, EmbeddingCache)
        else EmbeddingCache(source, batch_size=batch_size)
    )
