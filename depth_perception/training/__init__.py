"""Training and distillation: depth losses, datasets, the compact student network, fine-tuning
(``train``) and pseudo-label self-training (``distill``).

Everything that needs torch imports it lazily, so ``import depth_perception.training`` is cheap.
"""

from __future__ import annotations
