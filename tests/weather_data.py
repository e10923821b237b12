"""A tiny text/label classification set for real fine-tune tests (no network, no hub)."""

from __future__ import annotations

import json
import random

WORDS = {"pos": ["sunny", "bright", "warm", "clear"], "neg": ["rainy", "stormy", "cold", "grey"]}
FILLER = ["today", "the", "sky", "is", "very", "quite", "and", "outside", "here", "again"]


def write_weather(path, n: int = 200, seed: int = 0) -> None:
    """Text/label rows whose label one keyword gives away: a tiny model learns it in ~20 steps."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(n):
            label = rng.choice(["pos", "neg"])
            words = [rng.choice(FILLER) for _ in range(rng.randint(3, 7))]
            words.insert(rng.randrange(len(words) + 1), rng.choice(WORDS[label]))
            f.write(json.dumps({"text": " ".join(words), "label": label}) + "\n")
