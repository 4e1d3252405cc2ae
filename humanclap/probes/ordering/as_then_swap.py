"""As/then swap probe (event-ordering §3.2, Table 3): is "as" (simultaneous) told from "then"?

R@10 with the original and with the as <-> then swapped queries, per connective.
See docs/probes.md#as-then-swap.
"""

from __future__ import annotations

from humanclap.data.pairs import RatedPairs
from humanclap.probes.base import Table
from humanclap.probes.ordering.swap_retrieval import SwapRetrievalProbe
from humanclap.text.ordering import swap_as_then


class AsThenSwapProbe(SwapRetrievalProbe):
    """Text -> audio R@k with original vs as<->then-replaced queries (Table 3).

    Args:
        pairs: the pairs (training: the validation split; evaluate: the chosen split).
        match_threshold: a pair with ``score >= match_threshold`` is an original (and a match).
        k: the cut-off of R@k (Table 3: R@10).
        gallery: ``"connective"`` (the paper: per connective, the clips its sentences match) or
            ``"all"`` (every unique clip of the pairs).
        batch_size: inputs per model call when ``run`` gets an ``Embedder``.
    """

    name = "as_then_swap"
    manipulation = staticmethod(swap_as_then)
    connectives = ("then", "as")
    what = "has exactly one temporal 'as' or 'then'"
    swapped_label = "replaced"

    def __init__(
        self,
        pairs: RatedPairs,
        match_threshold: float = 0.5,
        k: int = 10,
        gallery: str = "connective",
        batch_size: int = 32,
    ) -> None:
        super().__init__(
            pairs, match_threshold=match_threshold, k=k, gallery=gallery, batch_size=batch_size
        )

    def tables(self) -> dict[str, Table]:
        r = self.recall
        table = Table(
            [
                ("Then", f"then/{r}_original"),
                ("r/Then/As", f"then/{r}_swapped"),
                ("As", f"as/{r}_original"),
                ("r/As/Then", f"as/{r}_swapped"),
                ("n then", "then/n_queries"),
                ("n as", "as/n_queries"),
            ],
            note=(
                f"As event-ordering Table 3: Then / As = {r} of the original sentences with that "
                "connective, r/Then/As = the same sentences with 'then' replaced by 'as' (and vice "
                "versa). " + self._gallery_note()
            ),
        )
        return {"as_then_swap": table}
