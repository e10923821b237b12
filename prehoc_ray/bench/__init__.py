"""Benchmarks against the peers (issue 6): worlds, policies, metrics, the 30-LLM AtS study.

A *world* is a set of candidates whose curves can be replayed step by step, with costs,
horizons, static features and true finals. A *policy* gets a world and a probe budget and
returns a prediction (and, where it has one, a standard deviation) for every candidate's final,
having bought its observations through a `Replay`, which charges every policy the same cost per
step and refuses any step past the budget. `metrics` scores the predictions against the truth.
"""
