"""Event-ordering probes (event-ordering §3.2): before/after test, clause and as-then swaps, text sensitivity;
``swap_retrieval.py`` holds what they share."""
