"""``scalelab prune``: prune a reference model at initialisation and print the report."""

from __future__ import annotations

import json
import warnings

import typer

from ..theory import activation_names

_HELP = "\n\n".join([
    "Prune a reference model at initialisation and print what happened (arXiv 2002.08797).",
    "Builds the model (--model mlp: a deep MLP with --init eoc|standard; resnet: a residual "
    "MLP, conv-resnet: a small conv ResNet, both with --mode stable|standard branch "
    "scaling), scores its weights with --method on real digits (--dataset), keeps exactly "
    "round((1 - sparsity) * N) of them and, unless --no-rescale, rescales each neuron's "
    "surviving weights back to their dense squared norm (the EOC rescaling trick).",
    "Prints per layer: kept weights, sparsity, dead neurons, rescaling factors, and which "
    "layers collapsed (kept no weight). --train-steps N then trains the pruned net with Adam "
    "and reports its test accuracy.",
    "--method stochastic (arXiv 2110.11804) first trains the dense net --pretrain-steps "
    "Adam steps, takes the --start mask (magnitude, snip, random, ...), puts a trainable "
    "Bernoulli keep-probability on every weight, fine-tunes the probabilities --mask-steps "
    "steps (weights frozen; expected density held at the target) and thresholds them back "
    "to exactly the requested sparsity; it reports the test accuracy of the start mask, of "
    "the stochastic net and of the thresholded mask.",
    "Example: scalelab prune --model mlp --depth 20 --sparsity 0.95 --method snip",
    "Example: scalelab prune --model mlp --depth 2 --width 300 --act relu --method "
    "stochastic --start magnitude --sparsity 0.95",
])


def prune_cmd(
    model: str = typer.Option("mlp", "--model", help="mlp, resnet (residual MLP) or "
                              "conv-resnet."),
    depth: int = typer.Option(20, "--depth", help="Hidden layers (mlp) or residual blocks."),
    width: int = typer.Option(128, "--width", help="Hidden width / channels."),
    act: str = typer.Option(None, "--act", help=f"Activation: {activation_names()} (default "
                            "tanh for mlp, relu for the ResNets)."),
    init: str = typer.Option("eoc", "--init", help="mlp only: eoc (Edge of Chaos) or standard "
                             "(PyTorch default)."),
    mode: str = typer.Option("stable", "--mode", help="ResNets only: stable (1/sqrt(L) "
                             "branches) or standard (1)."),
    dataset: str = typer.Option("mnist", "--dataset", help="mnist or sklearn-digits: input "
                                "size and the batch the scores see."),
    sparsity: float = typer.Option(0.9, "--sparsity", help="Fraction of weights to remove, "
                                   "in [0, 1)."),
    method: str = typer.Option("snip", "--method", help="magnitude, random, snip, grasp, "
                               "synflow, sbp-sr, or stochastic (fine-tuned stochastic masks "
                               "of a trained net)."),
    scope: str = typer.Option("global", "--scope", help="global (one ranking) or layer."),
    no_rescale: bool = typer.Option(False, "--no-rescale", help="Skip the EOC rescaling "
                                    "trick."),
    strict: bool = typer.Option(False, "--strict", help="Layer collapse is an error (exit 2) "
                                "instead of a warning."),
    iterations: int = typer.Option(100, "--iterations", help="SynFlow rounds."),
    batch_size: int = typer.Option(256, "--batch-size", help="Training images the data-based "
                                   "scores (snip, grasp, sbp-sr) see."),
    train_steps: int = typer.Option(0, "--train-steps", help="Train the pruned net this many "
                                    "Adam steps (batch 128) and report test accuracy."),
    lr: float = typer.Option(1e-3, "--lr", help="Adam learning rate for --train-steps."),
    start: str = typer.Option("magnitude", "--start", help="stochastic only: the start mask "
                              "(magnitude, snip, random or another at-init method)."),
    pretrain_steps: int = typer.Option(None, "--pretrain-steps", help="stochastic only: dense "
                                       "Adam steps before pruning (default 300)."),
    mask_steps: int = typer.Option(300, "--mask-steps", help="stochastic only: mask "
                                   "fine-tuning steps."),
    mask_lr: float = typer.Option(0.05, "--mask-lr", help="stochastic only: Adam lr of the "
                                  "mask logits."),
    estimator: str = typer.Option("concrete", "--estimator", help="stochastic only: concrete "
                                  "(relaxed Bernoulli) or lrt (local reparametrisation)."),
    temperature: float = typer.Option(0.5, "--temperature", help="stochastic only: Concrete "
                                      "temperature."),
    seed: int = typer.Option(0, "--seed", help="Random seed; same seed, same numbers."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON alone on "
                                 "stdout."),
) -> None:
    from .._utils import seed_everything, to_jsonable
    from ..data import load_digits
    from ..errors import ScalelabWarning, check_choice, check_int
    from ..nn import MODEL_FAMILIES, build_model
    from ..prune import prune_at_init

    check_choice("--model", model, MODEL_FAMILIES)
    check_choice("--init", init, ("eoc", "standard"))
    check_choice("--mode", mode, ("stable", "standard"))
    batch_size = check_int("--batch-size", batch_size)
    train_steps = check_int("--train-steps", train_steps, minimum=0)
    seed_everything(seed)
    data = load_digits(dataset, seed=seed)
    side = int(round(data.input_dim ** 0.5))
    net = build_model(model, data.input_dim, data.num_classes, depth=depth, width=width,
                      init=init if model == "mlp" else mode,
                      act=act or ("tanh" if model == "mlp" else "relu"), seed=seed,
                      image_shape=(1, side, side))
    batch = (data.x_train[:batch_size], data.y_train[:batch_size])
    extra: dict = {}
    if method == "stochastic":
        report, extra = _stochastic(net, data, sparsity, scope=scope, start=start,
                                    pretrain_steps=300 if pretrain_steps is None
                                    else pretrain_steps, mask_steps=mask_steps, mask_lr=mask_lr,
                                    estimator=estimator, temperature=temperature,
                                    batch_size=batch_size, seed=seed)
    else:
        if pretrain_steps is not None:
            raise ValueError("--pretrain-steps applies to --method stochastic only (the other "
                             "methods prune at initialisation)")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ScalelabWarning)
            report = prune_at_init(net, sparsity, method, data=batch, scope=scope,
                                   rescale=not no_rescale, strict=strict,
                                   input_shape=(data.input_dim,), seed=seed,
                                   iterations=iterations)
        for w in caught:
            typer.echo(f"warning: {w.message}", err=True)
    doc = {"model": model, "depth": depth, "width": width, "dataset": dataset, "seed": seed,
           **report.to_dict(), **extra}
    if train_steps:
        from ..train import train_classifier

        typer.echo(f"training {train_steps} steps ...", err=True)
        curve = train_classifier(net, data, steps=train_steps, lr=lr, optimizer="adam",
                                 seed=seed)
        doc.update(train_steps=train_steps, test_accuracy=curve.test_accuracy,
                   diverged=curve.diverged)
    if as_json:
        typer.echo(json.dumps(to_jsonable(doc), indent=2))
        return
    typer.echo(f"{model} (depth {depth}, width {width}) on {dataset}")
    typer.echo(str(report))
    if extra:
        typer.echo(f"\ntest accuracy: dense {extra['dense_accuracy']:.4f}; start mask "
                   f"({start}) {extra['start_accuracy']:.4f}; stochastic masks after "
                   f"{mask_steps} steps {extra['stochastic_accuracy']:.4f}; thresholded "
                   f"{extra['threshold_accuracy']:.4f}")
    if train_steps:
        acc = "diverged" if curve.diverged else f"{curve.test_accuracy:.4f}"
        typer.echo(f"\ntest accuracy after {train_steps} Adam steps: {acc}")


def _stochastic(net, data, sparsity: float, *, scope: str, start: str, pretrain_steps: int,
                mask_steps: int, mask_lr: float, estimator: str, temperature: float,
                batch_size: int, seed: int):
    """Pretrain, start mask, fine-tune stochastic masks, threshold: (report, numbers)."""
    from ..errors import check_int
    from ..experiments.stochastic_setup import (
        error,
        masked_error,
        start_masks,
        stochastic_error,
        train_dense,
    )
    from ..prune import get_method, stochastic_masks_, threshold_masks_, train_masks

    pretrain_steps = check_int("--pretrain-steps", pretrain_steps, minimum=0)
    mask_steps = check_int("--mask-steps", mask_steps)
    if not get_method(start).at_init:
        raise ValueError(f"--start must be a deterministic method, got {start!r}")
    x, y, xt, yt = data.x_train, data.y_train, data.x_test, data.y_test
    if pretrain_steps:
        typer.echo(f"training the dense net {pretrain_steps} steps ...", err=True)
        train_dense(net, x, y, steps=pretrain_steps, seed=seed)
    dense = error(net, xt, yt)
    masks = start_masks(net, start, sparsity, x, y, seed=seed, score_batch=batch_size)
    start_err = masked_error(net, masks, xt, yt)
    sm = stochastic_masks_(net, masks, sparsity=sparsity, scope=scope, estimator=estimator,
                           temperature=temperature)
    rec = train_masks(sm, (x, y), steps=mask_steps, lr=mask_lr, seed=seed,
                      description="mask fine-tuning")
    stoch = stochastic_error(net, xt, yt, networks=200, per_network=10, seed=seed)
    report = threshold_masks_(net, sparsity, scope=scope)
    return report, {"start": start, "pretrain_steps": pretrain_steps, "mask_steps": mask_steps,
                    "estimator": estimator, "temperature": temperature,
                    "dense_accuracy": 1 - dense, "start_accuracy": 1 - start_err,
                    "stochastic_accuracy": 1 - stoch, "threshold_accuracy": 1 - error(net, xt, yt),
                    "final_mask_loss": rec.loss[-1],
                    "max_density_error": max(abs(d - report.kept / report.total)
                                             for d in rec.density)}


def register(app: typer.Typer) -> None:
    app.command("prune", help=_HELP)(prune_cmd)
