"""Traffic split between served entities: smooth weighted round robin (nginx's algorithm).

Over any window of 100 picks, an 80/20 split gives exactly 80 and 20.
"""

from __future__ import annotations


class SmoothWeightedRoundRobin:
    """Pick names in proportion to integer weights, interleaved as evenly as possible."""

    def __init__(self, weights: dict[str, int]) -> None:
        self.weights = {k: int(w) for k, w in weights.items() if int(w) > 0}
        self.current = dict.fromkeys(self.weights, 0)

    def pick(self) -> str:
        if not self.weights:
            raise LookupError("no served entity receives traffic")
        total = sum(self.weights.values())
        for k, w in self.weights.items():
            self.current[k] += w
        best = max(self.current, key=lambda k: self.current[k])
        self.current[best] -= total
        return best


def weights_for(config: dict) -> dict[str, int]:
    """Traffic weights of a stored config; an even split when it has no traffic_config."""
    routes = ((config.get("traffic_config") or {}).get("routes")) or []
    if routes:
        return {r["served_entity_name"]: int(r["traffic_percentage"]) for r in routes}
    names = [e["name"] for e in config.get("served_entities", [])]
    return dict.fromkeys(names, 1)
