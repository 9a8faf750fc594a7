"""``scalelab prune``: prune a reference model at initialisation and print the report."""

from __future__ import annotations

import json
import warnings

import typer

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
    "Example: scalelab prune --model mlp --depth 20 --sparsity 0.95 --method snip",
])


def prune_cmd(
    model: str = typer.Option("mlp", "--model", help="mlp, resnet (residual MLP) or "
                              "conv-resnet."),
    depth: int = typer.Option(20, "--depth", help="Hidden layers (mlp) or residual blocks."),
    width: int = typer.Option(128, "--width", help="Hidden width / channels."),
    act: str = typer.Option(None, "--act", help="Activation (default tanh for mlp, relu for "
                            "the ResNets)."),
    init: str = typer.Option("eoc", "--init", help="mlp only: eoc (Edge of Chaos) or standard "
                             "(PyTorch default)."),
    mode: str = typer.Option("stable", "--mode", help="ResNets only: stable (1/sqrt(L) "
                             "branches) or standard (1)."),
    dataset: str = typer.Option("mnist", "--dataset", help="mnist or sklearn-digits: input "
                                "size and the batch the scores see."),
    sparsity: float = typer.Option(0.9, "--sparsity", help="Fraction of weights to remove, "
                                   "in [0, 1)."),
    method: str = typer.Option("snip", "--method", help="magnitude, random, snip, grasp, "
                               "synflow or sbp-sr."),
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
    seed: int = typer.Option(0, "--seed", help="Random seed; same seed, same numbers."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON alone on "
                                 "stdout."),
) -> None:
    from .._errors import ScalelabWarning, check_choice, check_int
    from .._utils import seed_everything, to_jsonable
    from ..data import load_digits
    from ..experiments.pruning_at_init import MODEL_FAMILIES, build_model
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
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ScalelabWarning)
        report = prune_at_init(net, sparsity, method, data=batch, scope=scope,
                               rescale=not no_rescale, strict=strict,
                               input_shape=(data.input_dim,), seed=seed, iterations=iterations)
    for w in caught:
        typer.echo(f"warning: {w.message}", err=True)
    doc = {"model": model, "depth": depth, "width": width, "dataset": dataset, "seed": seed,
           **report.to_dict()}
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
    if train_steps:
        acc = "diverged" if curve.diverged else f"{curve.test_accuracy:.4f}"
        typer.echo(f"\ntest accuracy after {train_steps} Adam steps: {acc}")


def register(app: typer.Typer) -> None:
    app.command("prune", help=_HELP)(prune_cmd)
