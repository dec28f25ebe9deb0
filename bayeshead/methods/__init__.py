"""Whole-model uncertainty methods (registered in :data:`bayeshead.registry.METHODS`).

A method wraps a :class:`~bayeshead.model.BayesianModel` and owns the part of the uncertainty
that lives inside the backbone: full MC-dropout, adapter deep ensembles, Laplace over adapter
parameters (Laplace-LoRA), BLoB and TFB. ``single`` is one model whose head carries all of it.
Heads never reach back into the model; methods do.
"""
