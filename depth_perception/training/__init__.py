"""Training and distillation: depth losses, datasets, student weights files, fine-tuning
(``train``) and pseudo-label self-training (``distill``). The student network itself is the depth
engine's (:mod:`depth_perception.depth.student`); the commands are in :mod:`depth_perception.cli`.

Data: :mod:`.dataset` (the sample type, splits, depth decoding), :mod:`.sources` (folders, rosbags,
the tabletop generator; spec strings), :mod:`.view` (crops, flips, jitter → tensors).
Training: :mod:`.config`, :mod:`.trainee` (the network), :mod:`.losses`, :mod:`.loop` (the steps),
:mod:`.checkpoints`, :mod:`.history` (CSV and curves), :mod:`.evaluation` (held-out metrics);
:mod:`.train` and :mod:`.distill` are the two commands' entry points, :mod:`.student` writes student
weights files and :mod:`.default_model` is the bundled model's recipe.

Everything that needs torch imports it lazily, so ``import depth_perception.training`` is cheap.
"""

from __future__ import annotations
