"""Trains LaVie's cascade at toy scale on the toy world (python -m lavie_ref.train; see python/TRAINING.md).

Flush-to-zero is switched on here, at import, before any torch operation starts the CPU thread pool: worker
threads inherit the floating-point mode of the thread that creates them, and denormal floats (underflowing
softmax and activation tails) made training steps up to 30x slower.
"""

import torch

torch.set_flush_denormal(True)
