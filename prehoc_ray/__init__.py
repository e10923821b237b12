"""prehoc-ray: decide, before paying for them, which fine-tunes are worth running.

Layers (imports point one way only):
    types -> core -> {sim, io} -> execution -> cli
    runner depends only on types (heavy imports stay inside functions).
"""

__version__ = "0.1.0"
