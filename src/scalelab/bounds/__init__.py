"""PAC-Bayes bounds and self-bounded learning for stochastic-mask networks.

The math (numpy): the binary KL :func:`kl_bernoulli` and its upper inverse
:func:`kl_inverse`; the bounds :func:`maurer_bound` (kl form, ``ln(2 sqrt(n)/delta)``),
:func:`mcallester_bound`, :func:`catoni_bound`, and :func:`sample_convergence_bound`
(Langford-Caruana, for the Monte Carlo estimate of a posterior's empirical error).

On networks (torch, with :mod:`scalelab.prune`'s stochastic masks): :func:`certify` gives a
:class:`Certificate` of a posterior's error from a prior fixed before the bound sample;
:func:`train_with_bound` minimises a differentiable bound surrogate. Guide: docs/bounds.md.
Papers: arXiv 2110.11804; Maurer 2004; Dziugaite & Roy, arXiv 1703.11008.
"""

from .certificates import Certificate as Certificate
from .certificates import certify as certify
from .certificates import distribution_kl as distribution_kl
from .certificates import sampled_errors as sampled_errors
from .kl import kl_bernoulli as kl_bernoulli
from .kl import kl_bernoulli_logits as kl_bernoulli_logits
from .kl import kl_inverse as kl_inverse
from .pac_bayes import CATONI_GRID as CATONI_GRID
from .pac_bayes import catoni_bound as catoni_bound
from .pac_bayes import complexity as complexity
from .pac_bayes import maurer_bound as maurer_bound
from .pac_bayes import mcallester_bound as mcallester_bound
from .pac_bayes import sample_convergence_bound as sample_convergence_bound
from .self_bounded import BOUND_FORMS as BOUND_FORMS
from .self_bounded import BoundTraining as BoundTraining
from .self_bounded import bound_surrogate as bound_surrogate
from .self_bounded import bounded_cross_entropy as bounded_cross_entropy
from .self_bounded import train_with_bound as train_with_bound

__all__ = ["BOUND_FORMS", "BoundTraining", "CATONI_GRID", "Certificate", "bound_surrogate",
           "bounded_cross_entropy", "catoni_bound", "certify", "complexity",
           "distribution_kl", "kl_bernoulli", "kl_bernoulli_logits", "kl_inverse",
           "maurer_bound", "mcallester_bound", "sample_convergence_bound", "sampled_errors",
           "train_with_bound"]
