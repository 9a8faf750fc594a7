"""``scalelab certify``: self-bounded learning of a stochastic pruned MLP, with its certificate."""

from __future__ import annotations

import json

import typer

_HELP = "\n\n".join([
    "Train a stochastic pruned MLP against a PAC-Bayes bound and print the certificate of "
    "its test error (arXiv 2110.11804; docs/bounds.md).",
    "The training set is split: --prior-fraction of it fits a data-dependent prior (dense "
    "Adam, --sparsity magnitude mask, mask fine-tuning) and the rest is the bound sample, "
    "which the prior never sees; with --prior data-independent the prior is the random "
    "initialisation with Bernoulli(1 - sparsity) masks and the bound sample is the whole "
    "training set. The posterior starts at the prior and minimises the bound surrogate "
    "(--form) over the mask probabilities (and Gaussian weights with --weight-noise S > 0) "
    "for --bound-steps steps. The certificate is Maurer's kl bound at the Langford-Caruana "
    "bound of the posterior's empirical 0-1 error, valid with probability 1 - delta - "
    "delta-sample; the posterior's test error (sampled networks) is printed beside it.",
    "Example: scalelab certify --dataset mnist --hidden 300,100 --sparsity 0.9 --json",
])


def certify_cmd(
    dataset: str = typer.Option("sklearn-digits", "--dataset", help="mnist or sklearn-digits."),
    hidden: str = typer.Option("100", "--hidden", help="Hidden widths of the ReLU MLP, e.g. "
                               "300,100."),
    sparsity: float = typer.Option(0.9, "--sparsity", help="Fraction of weights pruned in "
                                   "expectation, in (0, 1)."),
    prior: str = typer.Option("data-dependent", "--prior", help="data-dependent (fitted on a "
                              "separate split) or data-independent (random init)."),
    prior_fraction: float = typer.Option(0.5, "--prior-fraction", help="Share of the training "
                                         "set that fits a data-dependent prior."),
    dense_steps: int = typer.Option(300, "--dense-steps", help="Dense Adam steps for the "
                                    "prior's weights."),
    prior_steps: int = typer.Option(150, "--prior-steps", help="Mask fine-tuning steps for "
                                    "the prior."),
    bound_steps: int = typer.Option(150, "--bound-steps", help="Steps on the bound surrogate."),
    weight_noise: float = typer.Option(0.0, "--weight-noise", help="Prior std of Gaussian "
                                       "weights; 0: masks only (weights fixed)."),
    form: str = typer.Option("mcallester", "--form", help="Surrogate: mcallester or catoni."),
    delta: float = typer.Option(0.025, "--delta", help="Confidence of the PAC-Bayes bound."),
    delta_sample: float = typer.Option(0.01, "--delta-sample", help="Confidence of the Monte "
                                       "Carlo bound on the empirical error."),
    passes: int = typer.Option(10, "--passes", help="Passes over the bound sample, a fresh "
                               "network per --per-network examples."),
    per_network: int = typer.Option(10, "--per-network", help="Examples per sampled network."),
    seed: int = typer.Option(0, "--seed", help="Random seed; same seed, same numbers."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON alone on "
                                 "stdout."),
) -> None:
    from .._utils import seed_everything, to_jsonable
    from ..bounds import BOUND_FORMS, certify, train_with_bound
    from ..data import load_digits
    from ..errors import check_choice, check_fraction, check_int, check_positive
    from ..experiments.stochastic_setup import (
        MaskProtocol,
        digits_mlp,
        finetune_masks,
        start_masks,
        stochastic_error,
        train_dense,
    )
    from ..prune import mask_distribution, stochastic_masks_

    check_choice("--prior", prior, ("data-dependent", "data-independent"))
    check_choice("--form", form, BOUND_FORMS)
    sparsity = check_fraction("--sparsity", sparsity, low_open=True, high_open=True)
    prior_fraction = check_fraction("--prior-fraction", prior_fraction, low_open=True,
                                    high_open=True)
    noise = check_positive("--weight-noise", weight_noise, allow_zero=True) or None
    delta = check_fraction("--delta", delta, low_open=True, high_open=True)
    delta_sample = check_fraction("--delta-sample", delta_sample, low_open=True, high_open=True)
    for name, value in (("--dense-steps", dense_steps), ("--prior-steps", prior_steps),
                        ("--bound-steps", bound_steps), ("--passes", passes),
                        ("--per-network", per_network)):
        check_int(name, value)
    try:
        widths = tuple(int(w) for w in hidden.split(","))
    except ValueError:
        raise ValueError(f"--hidden must be comma-separated widths, got {hidden!r}") from None
    if not widths or min(widths) < 1:
        raise ValueError(f"--hidden must be positive widths, got {hidden!r}")
    seed_everything(seed)
    data = load_digits(dataset, seed=seed)
    x, y = data.x_train, data.y_train
    net = digits_mlp(data.input_dim, widths, data.num_classes, seed)
    if prior == "data-dependent":
        cut = int(round(prior_fraction * x.shape[0]))
        prior_data, bound_data = (x[:cut], y[:cut]), (x[cut:], y[cut:])
        typer.echo(f"fitting the prior on {cut} examples ...", err=True)
        train_dense(net, *prior_data, steps=dense_steps, seed=seed)
        masks = start_masks(net, "magnitude", sparsity, *prior_data, seed=seed)
        sm, _ = finetune_masks(net, masks, sparsity, *prior_data,
                               MaskProtocol(steps=prior_steps), seed=seed, weight_noise=noise,
                               progress="prior masks")
    else:
        bound_data = (x, y)
        sm = stochastic_masks_(net, "magnitude", sparsity=sparsity, mix=1.0, weight_noise=noise)
    p = mask_distribution(net)
    sm.estimator = "lrt"
    rec = train_with_bound(sm, bound_data, p, steps=bound_steps, delta=delta, form=form,
                           seed=seed, description="bound training")
    cert = certify(net, bound_data, p, delta=delta, delta_sample=delta_sample, n_samples=passes,
                   examples_per_network=per_network, seed=seed)
    test_error = stochastic_error(net, data.x_test, data.y_test, networks=500,
                                  per_network=per_network, seed=seed + 1)
    doc = {"dataset": dataset, "hidden": list(widths), "sparsity": sparsity, "prior": prior,
           "weight_noise": noise or 0.0, "form": form, "seed": seed, "bound_steps": bound_steps,
           "surrogate_start": rec.surrogate[0], "surrogate_end": rec.surrogate[-1],
           "test_error": test_error, **cert.to_dict()}
    if as_json:
        typer.echo(json.dumps(to_jsonable(doc), indent=2))
        return
    typer.echo(f"{dataset}, MLP {'-'.join(map(str, widths))}, {sparsity:.0%} sparsity, "
               f"{prior} prior{', Gaussian weights' if noise else ''}")
    typer.echo(str(cert))
    typer.echo(f"test error of the posterior (sampled networks): {test_error:.4f}")


def register(app: typer.Typer) -> None:
    app.command("certify", help=_HELP)(certify_cmd)
