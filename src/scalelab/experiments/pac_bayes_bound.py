"""Reproduction ``pac-bayes-bound``: a stochastic pruned network trained against a PAC-Bayes
bound comes with a non-vacuous certificate of its test error, close to that error.

arXiv 2110.11804 (self-bounded learning; NeurIPS 2021 BDL workshop "Stochastic Pruning"):
the stochastic mask's distribution is a PAC-Bayes posterior; with a data-dependent prior
fitted on a separate split (Dziugaite et al., arXiv 2006.10929), minimising a bound surrogate
over the mask probabilities gives a network with a numerically tight certificate.

What runs (per seed): the training set is split in half. Data-dependent prior: a ReLU MLP is
trained dense on the prior half, magnitude-pruned to 90% and its stochastic masks fine-tuned
on that half (Concrete estimator); that distribution is the prior P. The posterior starts at
P and minimises McAllester's surrogate (bounded cross-entropy, local reparametrisation) on
the other half, which the prior never saw; the certificate (Maurer's kl bound at the
Langford-Caruana upper bound of the posterior's empirical 0-1 error) uses that half. Two
posteriors: masks only (weights fixed to the prior's), and masks + Gaussian weights (prior
N(w_P, sigma_P^2), sigma_P fitted on the prior half from 0.01). Data-independent prior: the
same network at its random initialisation, Bernoulli(0.1) on every weight and N(w_0, 0.01^2);
the posterior (masks + Gaussian weights) trains on, and is certified on, the whole training
set. Test error of each posterior: the mean over sampled networks on the held-out test set.
"""

from __future__ import annotations

from .._progress import track
from ._common import seeds_for, sized, spread
from .registry import Context, Experiment, Outcome, register
from .stochastic_setup import (
    MaskProtocol,
    digits_mlp,
    finetune_masks,
    start_masks,
    stochastic_error,
    train_dense,
)

DELTA, DELTA_SAMPLE = 0.025, 0.01
SIGMA_PRIOR = 0.01
NON_VACUOUS = 0.5  # "well below the 0.9 of chance"
CLOSE = 0.10  # certified error - test error
JUDGED = "data-dependent prior, masks"
SETTINGS = (JUDGED, "data-dependent prior, masks + Gaussian weights",
            "data-independent prior, masks + Gaussian weights")
CRITERION = (f"On every seed, for the data-dependent prior with a mask-only posterior: the "
             f"certified error is below {NON_VACUOUS} (non-vacuous, well below chance 0.9) and "
             f"at most {CLOSE} above the posterior's measured test error; and on every seed and "
             f"every setting the certified error is at least the measured test error. The "
             f"data-independent prior and the Gaussian-weight posterior are reported, not "
             f"judged, except for that last condition.")


def _sizes(quick: bool) -> dict:
    if quick:
        return dict(dataset="sklearn-digits", hidden=(100,), sparsity=0.9, dense_steps=300,
                    prior=MaskProtocol(steps=100), bound_steps=100, passes=10, per_network=10,
                    test_networks=200,
                    seeds=2)
    return dict(dataset="mnist", hidden=(300, 100), sparsity=0.9, dense_steps=1000,
                prior=MaskProtocol(steps=500), bound_steps=500, passes=10, per_network=5,
                test_networks=1000,
                seeds=3)


def _certified_row(setting, sm, prior, bound_data, test, sz, seed, *, prior_cert=None) -> dict:
    from ..bounds import certify, train_with_bound

    sm.estimator = "lrt"  # lower-variance gradients for the bound (docs/bounds.md)
    rec = train_with_bound(sm, bound_data, prior, steps=sz["bound_steps"], delta=DELTA,
                           lr=0.05, batch_size=256, seed=seed, description=setting)
    cert = certify(sm.model, bound_data, prior, delta=DELTA, delta_sample=DELTA_SAMPLE,
                   n_samples=sz["passes"], examples_per_network=sz["per_network"], seed=seed)
    test_err = stochastic_error(sm.model, *test, networks=sz["test_networks"], per_network=10,
                                seed=seed + 1)
    row = {"setting": setting, "seed": seed, "test_error": test_err, **cert.to_dict(),
           "surrogate_start": rec.surrogate[0], "surrogate_end": rec.surrogate[-1]}
    if prior_cert is not None:
        row["prior_certified_error"] = prior_cert.certified_error
        row["prior_empirical_error"] = prior_cert.empirical_error
    return row


def _one_seed(sz: dict, seed: int) -> list[dict]:
    from ..bounds import certify
    from ..data import load_digits
    from ..prune import mask_distribution, stochastic_masks_

    data = load_digits(sz["dataset"], seed=seed)
    x, y, test = data.x_train, data.y_train, (data.x_test, data.y_test)
    half = x.shape[0] // 2
    prior_data, bound_data = (x[:half], y[:half]), (x[half:], y[half:])
    dims = (data.input_dim, sz["hidden"], data.num_classes, seed)
    s = sz["sparsity"]
    rows = []

    net = digits_mlp(*dims)
    train_dense(net, *prior_data, steps=sz["dense_steps"], seed=seed)
    fitted = {k: v.clone() for k, v in net.state_dict().items()}
    masks = start_masks(net, "magnitude", s, *prior_data, seed=seed)
    sm, _ = finetune_masks(net, masks, s, *prior_data, sz["prior"], seed=seed,
                           progress="prior masks")
    prior = mask_distribution(net)
    prior_cert = certify(net, bound_data, prior, delta=DELTA, delta_sample=DELTA_SAMPLE,
                         n_samples=sz["passes"], examples_per_network=sz["per_network"],
                         seed=seed)
    rows.append(_certified_row(SETTINGS[0], sm, prior, bound_data, test, sz, seed,
                               prior_cert=prior_cert))

    net = digits_mlp(*dims)
    net.load_state_dict(fitted)
    sm, _ = finetune_masks(net, masks, s, *prior_data, sz["prior"], seed=seed,
                           weight_noise=SIGMA_PRIOR, progress="prior masks + noise")
    prior = mask_distribution(net)
    rows.append(_certified_row(SETTINGS[1], sm, prior, bound_data, test, sz, seed))

    net = digits_mlp(*dims)  # the random initialisation: no data involved
    sm = stochastic_masks_(net, "magnitude", sparsity=s, mix=1.0, weight_noise=SIGMA_PRIOR)
    prior = mask_distribution(net)
    rows.append(_certified_row(SETTINGS[2], sm, prior, (x, y), test, sz, seed))
    return rows


def judge(rows: list[dict]) -> dict:
    judged = [r for r in rows if r["setting"] == JUDGED]
    non_vacuous = all(r["certified_error"] < NON_VACUOUS for r in judged)
    close = all(r["certified_error"] - r["test_error"] <= CLOSE for r in judged)
    below = [f"{r['setting']} (seed {r['seed']})" for r in rows
             if r["certified_error"] < r["test_error"]]
    return {"non_vacuous": non_vacuous, "close": close, "bound_below_test": below,
            "holds": non_vacuous and close and not below}


def _table(rows: list[dict]) -> list[str]:
    out = []
    for setting in SETTINGS:
        rs = [r for r in rows if r["setting"] == setting]

        def mean(key, rs=rs):
            return sum(r[key] for r in rs) / len(rs)

        out.append(f"{setting}: test error {mean('test_error'):.3f}, empirical "
                   f"{mean('empirical_error'):.3f} (n = {rs[0]['n']}), KL "
                   f"{mean('kl'):.3g} nats, certified {mean('certified_error'):.3f} "
                   f"(McAllester {mean('mcallester'):.3f}, Catoni {mean('catoni'):.3f})")
    return out


def run(ctx: Context) -> Outcome:
    from ..plots import plot_bound_vs_test

    sz = _sizes(ctx.quick)
    seeds = seeds_for(ctx, sz["seeds"])
    rows = []
    for seed in track(seeds, "pac-bayes-bound seeds", total=len(seeds)):
        rows += _one_seed(sz, seed)
    verdict = judge(rows)
    figure = "bound_vs_test.png"
    plot_bound_vs_test(rows, ctx.path(figure))
    judged = [r for r in rows if r["setting"] == JUDGED]
    spreads = {
        "certified error (data-dependent prior, masks)":
            spread([r["certified_error"] for r in judged], seeds),
        "certified - test error (data-dependent prior, masks)":
            spread([r["certified_error"] - r["test_error"] for r in judged], seeds),
    }
    hidden = "-".join(map(str, sz["hidden"]))
    ran = (f"ReLU MLP (hidden {hidden}) on {sz['dataset']}, 90% sparsity, training set split "
           f"in halves (prior / bound sample). Prior: dense Adam ({sz['dense_steps']} steps) "
           f"and {sz['prior'].steps} steps of mask fine-tuning on the prior half, or the "
           f"random initialisation (data-independent). Posterior: {sz['bound_steps']} Adam "
           f"steps on McAllester's surrogate (bounded cross-entropy, pmin 1e-4), delta "
           f"{DELTA}; certificate: Maurer's kl bound at the Langford-Caruana bound (delta' "
           f"{DELTA_SAMPLE}) from a fresh network per {sz['per_network']} examples, "
           f"{sz['passes']} passes; "
           f"confidence {1 - DELTA - DELTA_SAMPLE:.3f}. Seeds {', '.join(map(str, seeds))}.")
    parts = ["; ".join(_table(rows)) + "."]
    pre = [r["prior_certified_error"] for r in judged]
    post = sum(r["certified_error"] for r in judged) / len(judged)
    parts.append(f"The data-dependent prior alone (posterior = prior, KL 0) certifies "
                 f"{sum(pre) / len(pre):.3f}; bound training moves it to {post:.3f}.")
    if abs(post - sum(pre) / len(pre)) < 0.005:
        parts.append("So at this size the bound training changes the certificate by less "
                     "than 0.005: its tightness comes from the data-dependent prior, not from "
                     "optimising the bound.")
    indep = [r for r in rows if r["setting"] == SETTINGS[2]]
    if sum(r["test_error"] for r in indep) / len(indep) > 0.8:
        parts.append("The posterior of the data-independent prior (the random initialisation) "
                     "stays near chance: bound training from there did not learn at this "
                     "budget, so its certificate is vacuous — it bounds a useless network "
                     "correctly rather than showing what a data-independent prior could "
                     "certify for a trained one.")
    parts.append("Non-vacuous" + ("" if verdict["non_vacuous"] else ": NO") + "; within "
                 f"{CLOSE} of the test error" + ("" if verdict["close"] else ": NO") + "; "
                 + ("the bound was never below the measured test error." if
                    not verdict["bound_below_test"] else
                    "the bound fell below the measured test error for "
                    + ", ".join(verdict["bound_below_test"]) + "."))
    return Outcome(result={"rows": rows, "verdict": verdict, "sizes": sz,
                           "delta": DELTA, "delta_sample": DELTA_SAMPLE,
                           "sigma_prior": SIGMA_PRIOR},
                   figures=[figure], ran=ran, observed=" ".join(parts),
                   claim_holds=verdict["holds"], seeds=seeds, spread=spreads,
                   indicative=sized(ctx, True, False))


register(Experiment(
    name="pac-bayes-bound",
    description="Self-bounded stochastic pruning: PAC-Bayes certificates with data-dependent "
                "vs data-independent priors",
    paper="arXiv 2110.11804",
    claim="Training a stochastic pruned network's mask probabilities against a PAC-Bayes "
          "bound, with a data-dependent prior fitted on a separate split, yields a certified "
          "error bound that is non-vacuous and close to the network's test error.",
    run=run,
    criterion=CRITERION,
    min_seeds=3,
))
