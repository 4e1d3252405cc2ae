"""Retrieval probe: does the model rank the matching clips (texts) first for a text (clip)?

Text -> audio and audio -> text R@k, MRR (clamp3 §4.2) with its random-ranking expectation
``MRR_random`` (clamp3 §4.4 compares MRR with "the random baseline") and mAP@k, the pairs rated
``>= match_threshold`` being the matches; ties count against the model (``*_optimistic``: the
other rule). Matches, metric definitions and ties: see docs/probes.md#retrieval.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from humanclap.backbones.embedder import Embedder
from humanclap.data.pairs import RatedPairs, unique_in_order
from humanclap.probes.base import ProbeResult, Table
from humanclap.probes.cache import AudioRef, EmbeddingCache, ProbeInputs, as_cache
from humanclap.probes.metrics import OPTIMISTIC, check_cutoffs, retrieval_metrics

DIRECTIONS = {"t2a": "text → audio", "a2t": "audio → text"}
PROTOCOLS = ("unique_texts", "laion")


class RetrievalProbe:
    """Text -> audio and audio -> text retrieval among the clips and texts of a pair set.

    Args:
        pairs: the pairs (in training: the validation split of the training data).
        match_threshold: a pair with ``score >= match_threshold`` is a match.
        ks: cut-offs of R@k (hit rate: any match in the top k).
        map_k: cut-off of mAP@k (torchmetrics' definition, see docs/probes.md#retrieval).
        protocol: ``unique_texts`` (each distinct text is one query; it matches every clip a pair
            rates as a match) or ``laion``, LAION-CLAP's Clotho / AudioCaps evaluation: one text
            query per matching pair (a caption row), matching its own clip only; audio -> text
            mAP@k over all of the clip's captions (docs/probes.md#retrieval).
        batch_size: inputs per model call when ``run`` gets an ``Embedder``.
    """

    name = "retrieval"

    def __init__(
        self,
        pairs: RatedPairs,
        match_threshold: float = 0.5,
        ks: Sequence[int] = (1, 5, 10),
        map_k: int = 10,
        protocol: str = "unique_texts",
        batch_size: int = 32,
    ) -> None:
        self.ks, self.map_k = check_cutoffs(ks, map_k)
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {list(PROTOCOLS)}, got {protocol!r}")
        self.protocol = protocol
        if len(pairs) == 0:
            raise ValueError(f"retrieval probe: {pairs.name} has no pairs")
        self.pairs = pairs
        self.match_threshold = float(match_threshold)
        self.batch_size = batch_size
        self.clips = unique_in_order(p.audio for p in pairs)
        self.texts = unique_in_order(p.text for p in pairs)
        clip_index = {clip: i for i, clip in enumerate(self.clips)}
        text_index = {text: i for i, text in enumerate(self.texts)}
        matching = [p for p in pairs if p.score >= self.match_threshold]
        # The text queries (rows of matches): each distinct text, or each matching pair's text.
        self.queries = (
            [text_index[p.text] for p in matching]
            if protocol == "laion"
            else list(range(len(self.texts)))
        )
        self.matches = torch.zeros(len(self.queries), len(self.clips), dtype=torch.bool)
        """queries x clips: True where the query's text (laion: its pair) matches the clip."""
        for row, p in enumerate(matching):
            self.matches[
                row if protocol == "laion" else text_index[p.text], clip_index[p.audio]
            ] = True
        if not bool(self.matches.any()):
            scores = [p.score for p in pairs]
            raise ValueError(
                f"retrieval probe: no pair in {pairs.name} has score >= match_threshold={self.match_threshold:g} "
                f"(scores present: {min(scores):g} to {max(scores):g} over {len(pairs)} pairs), so no query has a "
                "match; lower match_threshold"
            )

    def inputs(self) -> ProbeInputs:
        """Every clip and text of the pairs, once each."""
        return ProbeInputs(
            audio=[AudioRef(self.pairs.audio_store, key) for key in self.clips],
            texts=list(self.texts),
        )

    def similarities(self, source: EmbeddingCache | Embedder) -> Tensor:
        """Cosines queries x clips (float64, CPU) from the unit-norm embeddings (queries: see ``protocol``)."""
        cache = as_cache(source, self.batch_size)
        inputs = self.inputs()
        audio = cache.audio(inputs.audio).detach().cpu().double()
        text = cache.text(inputs.texts).detach().cpu().double()
        return (text @ audio.T)[self.queries]

    def run(self, source: EmbeddingCache | Embedder) -> ProbeResult:
        similarity = self.similarities(source)
        metrics: dict[str, float] = {}
        for prefix, scores, matches in (
            ("t2a", similarity, self.matches),
            ("a2t", similarity.T, self.matches.T),
        ):
            values = retrieval_metrics(
                scores,
                matches,
                self.ks,
                self.map_k,
                map_over_all_matches=self.protocol == "laion" and prefix == "a2t",
            )
            metrics.update({f"{prefix}/{name}": value for name, value in values.items()})
        return ProbeResult(metrics, tables={"retrieval": self.table()})

    def table(self) -> Table:
        """Both directions side by side, as the CLAP papers lay them out."""
        names = [
            *(f"R@{k}" for k in self.ks),
            "MRR",
            "MRR_random",
            f"mAP@{self.map_k}",
            "n_queries",
        ]
        headers = {"MRR_random": "MRR random"}
        return Table(
            [
                (f"{prefix} {headers.get(name, name)}", f"{prefix}/{name}")
                for prefix in DIRECTIONS
                for name in names
            ],
            note=(
                f"t2a = text → audio, a2t = audio → text. A pair with score ≥ {self.match_threshold:g} is a "
                "match; R@k: any match in the top k; MRR: 1 / rank of the first match; MRR random: the "
                "MRR a uniformly random ranking expects for the same queries and gallery "
                "(Σ_r C(N−r, m−1) / (r·C(N, m)) per query with m matches among N items: H_N / N for one); "
                f"mAP@{self.map_k}: precision at each match in the top {self.map_k}, averaged over the matches "
                + (
                    "found there (torchmetrics' definition). "
                    if self.protocol == "unique_texts"
                    else "found there for t2a, over all the clip's matching texts for a2t (LAION-CLAP's "
                    "Clotho / AudioCaps protocol: one query per caption row). "
                )
                + "Ties count against the model: a tied wrong item "
                f"ranks ahead of a right one (`{OPTIMISTIC}` metrics break ties the other way)."
            ),
        )
