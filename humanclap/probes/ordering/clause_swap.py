"""Clause-swap probe (event-ordering §3.2, Fig. 2): does swapping the two events hurt retrieval?

R@1 with "A <prep> B" and with "B <prep> A" as queries, and the drop, overall and per preposition.
See docs/probes.md#clause-swap.
"""

from __future__ import annotations

from humanclap.data.pairs import RatedPairs
from humanclap.probes.base import Table
from humanclap.probes.ordering.swap_retrieval import SwapRetrievalProbe, metric_key
from humanclap.text.ordering import ORDER_CONNECTIVES, swap_clauses


class ClauseSwapProbe(SwapRetrievalProbe):
    """Text -> audio R@k with original vs clause-swapped queries.

    Args:
        pairs: the pairs (training: the validation split; evaluate: the chosen split).
        match_threshold: a pair with ``score >= match_threshold`` is an original (and a match).
        k: the cut-off of R@k (the paper: R@1, "to examine the model under stringent conditions").
        gallery: ``"all"`` (every unique clip of the pairs) or ``"connective"`` (per preposition,
            the clips its queries match).
        batch_size: inputs per model call when ``run`` gets an ``Embedder``.
    """

    name = "clause_swap"
    manipulation = staticmethod(swap_clauses)
    connectives = ORDER_CONNECTIVES
    what = "has exactly one of before / after / then / followed by between two clauses"
    swapped_label = "swapped"

    def __init__(
        self,
        pairs: RatedPairs,
        match_threshold: float = 0.5,
        k: int = 1,
        gallery: str = "all",
        batch_size: int = 32,
    ) -> None:
        super().__init__(
            pairs, match_threshold=match_threshold, k=k, gallery=gallery, batch_size=batch_size
        )

    def tables(self) -> dict[str, Table]:
        r = self.recall
        overall = Table(
            [
                (f"{r} original", f"{r}_original"),
                (f"{r} swapped", f"{r}_swapped"),
                ("drop", "drop"),
                ("n_queries", "n_queries"),
            ],
            note=self._gallery_note(),
        )
        by_prep = Table(
            [
                (f"{c} {column}", f"{metric_key(c)}/{key}")
                for c in self.connectives
                for column, key in (
                    ("orig", f"{r}_original"),
                    ("swap", f"{r}_swapped"),
                    ("n", "n_queries"),
                )
            ],
            note=f"{r} per preposition, original vs clause-swapped queries ('–': no such sentence).",
        )
        return {"clause_swap": overall, "clause_swap_by_preposition": by_prep}
