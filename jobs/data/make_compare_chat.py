"""Writes compare_chat.jsonl: a small chat dataset in the `messages` format (made here, no licence
strings attached), for jobs/hf_example.yaml. Rerun to regenerate: python jobs/data/make_compare_chat.py"""

import json
import random
from pathlib import Path

rng = random.Random(0)
rows = []
for _ in range(800):
    a, b = rng.sample(range(10, 1000), 2)
    ask = rng.choice(["Which is larger, {a} or {b}?", "Of {a} and {b}, which number is bigger?", "Pick the greater one: {a}, {b}."])
    rows.append({"messages": [
        {"role": "system", "content": "Answer with the number only."},
        {"role": "user", "content": ask.format(a=a, b=b)},
        {"role": "assistant", "content": str(max(a, b))},
    ]})
out = Path(__file__).with_name("compare_chat.jsonl")
out.write_text("".join(json.dumps(r) + "\n" for r in rows))
print(f"wrote {len(rows)} conversations to {out}")
