"""Pure text utilities: event-ordering manipulations (``humanclap.text.ordering``)."""

from humanclap.text.ordering import (
    CONNECTIVES,
    FIXED_PHRASES,
    MANIPULATIONS,
    ORDER_CONNECTIVES,
    SIMULTANEITY_CONNECTIVES,
    SKIP_REASONS,
    Connective,
    Manipulation,
    ManipulationStats,
    find_connectives,
    manipulate_all,
    swap_as_then,
    swap_before_after,
    swap_clauses,
)

__all__ = [
    "CONNECTIVES",
    "FIXED_PHRASES",
    "MANIPULATIONS",
    "ORDER_CONNECTIVES",
    "SIMULTANEITY_CONNECTIVES",
    "SKIP_REASONS",
    "Connective",
    "Manipulation",
    "ManipulationStats",
    "find_connectives",
    "manipulate_all",
    "swap_as_then",
    "swap_before_after",
    "swap_clauses",
]
