"""An instrument ontology as data, lowest common ancestors, and the triplets of two-tower §"Key Results".

(a, p, n) is a triplet iff depth(LCA(a, p)) > depth(LCA(a, n)). The JSON layout and the rule:
see docs/data.md#instrument-ontology.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from humanclap.data.pairs import DataError

DEFAULT_ONTOLOGY = Path(__file__).resolve().parents[2] / "resources" / "instrument_ontology.json"


class OntologyError(DataError):
    """A malformed ontology, or classes it does not contain."""


def _key(name: str) -> str:
    return " ".join(name.casefold().split())


@dataclass(frozen=True)
class Triplet:
    anchor: str
    positive: str
    negative: str
    positive_depth: int
    """depth(LCA(anchor, positive))"""
    negative_depth: int
    """depth(LCA(anchor, negative)), strictly smaller"""


class Ontology:
    """A rooted tree of instrument names (JSON layout: docs/data.md#instrument-ontology)."""

    def __init__(
        self,
        tree: Mapping[str, Any],
        root: str = "instrument",
        aliases: Mapping[str, str] | None = None,
        name: str = "ontology",
    ) -> None:
        self.name = name
        self.root = root
        self.parent: dict[str, str | None] = {}
        self.depth: dict[str, int] = {}
        self._names: dict[str, str] = {}
        self._add(root, None, "")
        self._walk(tree, root, root)
        self.aliases: dict[str, str] = {}
        for alias, target in (aliases or {}).items():
            if _key(alias) in self._names:
                raise OntologyError(f"{name}: alias {alias!r} is also a node name")
            self.aliases[_key(alias)] = self._lookup(target, f"alias {alias!r}")

    @classmethod
    def load(cls, path: str | Path | None = None) -> Ontology:
        """The ontology of a JSON file (None: the shipped ``resources/instrument_ontology.json``)."""
        path = Path(path) if path is not None else DEFAULT_ONTOLOGY
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise OntologyError(f"{path}: no such ontology file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise OntologyError(f"{path}: not a JSON ontology ({err})") from err
        if not isinstance(document, dict) or not isinstance(document.get("tree"), dict):
            raise OntologyError(
                f"{path}: expected a JSON object with a 'tree' object (and optional 'root', "
                "'aliases')"
            )
        aliases = document.get("aliases") or {}
        if not isinstance(aliases, dict):
            raise OntologyError(f"{path}: 'aliases' must be an object (alias -> node name)")
        return cls(
            document["tree"],
            root=document.get("root", "instrument"),
            aliases=aliases,
            name=str(path),
        )

    # -- building -----------------------------------------------------------------------------
    def _add(self, node: Any, parent: str | None, where: str) -> str:
        if not isinstance(node, str) or not node.strip():
            raise OntologyError(
                f"{self.name}: node names must be non-empty strings, got {node!r} under {where!r}"
            )
        key = _key(node)
        if key in self._names:
            raise OntologyError(
                f"{self.name}: node {node!r} appears twice (under {where!r} and under "
                f"{self.parent[self._names[key]]!r}); names must be unique"
            )
        node = " ".join(node.split())
        self._names[key] = node
        self.parent[node] = parent
        self.depth[node] = 0 if parent is None else self.depth[parent] + 1
        return node

    def _walk(self, children: Any, parent: str, where: str) -> None:
        if isinstance(children, dict):
            items = [(name, sub) for name, sub in children.items()]
        elif isinstance(children, list):
            items = [(name, None) for name in children]
        else:
            raise OntologyError(
                f"{self.name}: under {where!r} expected an object or a list, got {children!r}"
            )
        if not items:
            raise OntologyError(f"{self.name}: {where!r} has no children")
        for name, sub in items:
            node = self._add(name, parent, where)
            if sub is not None:
                self._walk(sub, node, node)

    # -- queries ------------------------------------------------------------------------------
    def _lookup(self, label: str, what: str) -> str:
        key = _key(str(label))
        if key in self._names:
            return self._names[key]
        if key in self.aliases:
            return self.aliases[key]
        close = get_close_matches(key, list(self._names) + list(self.aliases), n=3)
        raise OntologyError(
            f"{self.name}: {what} is not in the ontology" + (f" (close: {close})" if close else "")
        )

    def node(self, label: str) -> str:
        """The node a label names (case-insensitive; aliases resolved)."""
        return self._lookup(label, f"class {label!r}")

    def require(self, labels: Sequence[str]) -> dict[str, str]:
        """label -> node for every label; an error naming *all* labels the ontology lacks, or two
        labels that name the same node."""
        missing = [
            label
            for label in labels
            if _key(label) not in self._names and _key(label) not in self.aliases
        ]
        if missing:
            hints = {
                m: get_close_matches(_key(m), list(self._names) + list(self.aliases), n=2)
                for m in missing
            }
            shown = ", ".join(
                f"{m!r}" + (f" (close: {hints[m]})" if hints[m] else "") for m in missing
            )
            raise OntologyError(
                f"{self.name}: {len(missing)} class(es) missing from the ontology: {shown}; add them "
                "to the tree (or as aliases) or pass another ontology"
            )
        nodes = {label: self.node(label) for label in labels}
        seen: dict[str, str] = {}
        for label, node in nodes.items():
            if node in seen and seen[node] != label:
                raise OntologyError(
                    f"{self.name}: classes {seen[node]!r} and {label!r} are the same node {node!r}"
                )
            seen[node] = label
        return nodes

    def path(self, node: str) -> list[str]:
        """Root ... node."""
        node = self.node(node)
        out = [node]
        while (parent := self.parent[out[-1]]) is not None:
            out.append(parent)
        return out[::-1]

    def lca(self, a: str, b: str) -> str:
        """The lowest common ancestor of two nodes (a node is its own ancestor)."""
        common = self.root
        for x, y in zip(self.path(a), self.path(b)):
            if x != y:
                break
            common = x
        return common

    def lca_depth(self, a: str, b: str) -> int:
        return self.depth[self.lca(a, b)]

    def family(self, label: str) -> str:
        """The depth-1 ancestor of a label (its family); the root for the root itself."""
        path = self.path(label)
        return path[1] if len(path) > 1 else path[0]


def triplets(ontology: Ontology, classes: Sequence[str]) -> list[Triplet]:
    """Every (anchor, positive, negative) of ``classes`` with depth(LCA(a, p)) > depth(LCA(a, n)).

    Anchors, positives and negatives in the order of ``classes`` (deterministic). Every class must
    be in the ontology (an error names the missing ones).
    """
    nodes = ontology.require(classes)
    depth = {
        (a, b): ontology.lca_depth(nodes[a], nodes[b]) for a in classes for b in classes if a != b
    }
    return [
        Triplet(a, p, n, depth[a, p], depth[a, n])
        for a in classes
        for p in classes
        if p != a
        for n in classes
        if n not in (a, p) and depth[a, p] > depth[a, n]
    ]
