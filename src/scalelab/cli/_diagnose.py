"""``scalelab diagnose``: propagation profile, layer alignment and output field of a network."""

from __future__ import annotations

import json
from pathlib import Path

import typer

_HELP = "\n\n".join([
    "Look inside a network: per-layer variance, input correlation and gradient norm "
    "(profile.png, with the infinite-width theory for an EOC MLP), the alignment of each "
    "layer's tangent kernel with the labels (alignment.png, arXiv 2110.11749) and the output "
    "over a 2-D slice of input space (output_field.png, arXiv 1902.06853).",
    "Reference models: --model mlp|resnet with --act, --depth, --width, --init eoc|standard "
    "(MLP) or --mode (ResNet branch scales). A saved model: --state-dict FILE (weights for "
    "the reference model the other flags describe; loaded with weights_only=True) or "
    "--torchscript FILE (a scripted nn.Sequential of Linear layers and activations). Pickled "
    "models are never loaded.",
    "Inputs: a batch of real digits (--data digits: sklearn 8x8, 64 features; mnist: 784) or "
    "Gaussian vectors (--data gaussian --in-dim D, labels from a random linear teacher). With "
    "2-D inputs the output field covers [0,1]^2; otherwise the plane through three inputs.",
    "Writes OUT/profile.png, OUT/alignment.png, OUT/output_field.png and OUT/diagnose.json; "
    "--json prints the numbers on stdout.",
])

_THEORY_INPUTS = 16  # = diagnostics.PROFILE_INPUTS (kept literal: --help imports no torch)


def _data(name: str, batch: int, in_dim: int, classes: int, seed: int):
    import torch

    from ..errors import check_choice, check_int

    check_choice("data", name, ("digits", "mnist", "gaussian"))
    batch = check_int("batch", batch, minimum=2)
    if name == "gaussian":
        in_dim, classes = check_int("in_dim", in_dim), check_int("classes", classes, minimum=2)
        g = torch.Generator().manual_seed(seed)
        # 2-D inputs: uniform on [0,1]^2, the EOC picture's domain
        x = torch.rand(batch, 2, generator=g) if in_dim == 2 else torch.randn(batch, in_dim,
                                                                               generator=g)
        teacher = torch.randn(in_dim, classes, generator=g)
        return x, ((x - x.mean(0)) @ teacher).argmax(1), classes  # the teacher's labels
    from ..data import load_digits

    d = load_digits("sklearn-digits" if name == "digits" else "mnist", seed=seed)
    return d.x_train[:batch], d.y_train[:batch], d.num_classes


def _model(args: dict, in_dim: int, out_dim: int):
    from ..diagnostics import from_torchscript, load_state_dict_file, reference_model

    if args["torchscript"] is not None:
        if args["state_dict"] is not None:
            raise ValueError("give --torchscript or --state-dict, not both")
        return from_torchscript(args["torchscript"]), "torchscript"
    model = reference_model(args["model"], in_dim, args["width"], args["depth"], out_dim,
                            act=args["act"], init=args["init"], sigma_b=args["sigma_b"],
                            mode=args["mode"])
    if args["state_dict"] is not None:
        load_state_dict_file(model, args["state_dict"])
        return model, "state_dict"
    return model, "reference"


def diagnose(
    model: str = typer.Option("mlp", "--model", help="Reference model: mlp or resnet."),
    act: str = typer.Option("tanh", "--act", help="Activation (relu, tanh, gelu, ...)."),
    depth: int = typer.Option(10, "--depth", help="Hidden layers (mlp) or residual blocks."),
    width: int = typer.Option(256, "--width", help="Hidden width."),
    init: str = typer.Option("eoc", "--init", help="mlp init: eoc (Edge of Chaos) or standard "
                             "(PyTorch default)."),
    sigma_b: float = typer.Option(None, "--sigma-b", help="Bias std of the EOC init (default "
                                  "per activation; 0 for ReLU)."),
    mode: str = typer.Option("stable", "--mode", help="resnet branch scales: stable "
                             "(1/sqrt(L)), standard (1), decreasing, depth_mup."),
    state_dict: Path = typer.Option(None, "--state-dict", help="Weights (torch.save of a "
                                    "state_dict) for the reference model described."),
    torchscript: Path = typer.Option(None, "--torchscript", help="A TorchScript file "
                                     "(torch.jit.save) of an nn.Sequential MLP."),
    data: str = typer.Option("digits", "--data", help="digits, mnist or gaussian."),
    in_dim: int = typer.Option(2, "--in-dim", help="Input dimension of --data gaussian."),
    classes: int = typer.Option(10, "--classes", help="Outputs / classes of --data gaussian."),
    batch: int = typer.Option(64, "--batch", help="Examples for the alignment (the profile "
                              f"uses the first {_THEORY_INPUTS})."),
    resolution: int = typer.Option(64, "--resolution", help="Output-field grid points per side."),
    alignment: bool = typer.Option(True, "--alignment/--no-alignment", help="Compute the "
                                   "layer alignment (C backward passes, C = outputs)."),
    out: Path = typer.Option(Path("runs/diagnose"), "--out", help="Folder for the figures and "
                             "diagnose.json (may exist)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the init and the data; same seed, "
                             "same numbers."),
    as_json: bool = typer.Option(False, "--json", help="Print the numbers as JSON on stdout."),
) -> None:
    from .._utils import seed_everything, to_jsonable
    from ..diagnostics import diagnose_network
    from ..errors import check_out_dir
    from ..plots import plot_alignment, plot_output_field, plot_profile

    out = check_out_dir("--out", out)
    seed_everything(seed)
    x, y, n_out = _data(data, batch, in_dim, classes, seed)
    args = dict(model=model, act=act, depth=depth, width=width, init=init, sigma_b=sigma_b,
                mode=mode, state_dict=state_dict, torchscript=torchscript)
    net, source = _model(args, x.shape[1], n_out)
    args["source"] = source
    layers = None
    if model == "resnet" and source != "torchscript":  # follow the residual stream
        layers = ["input", *[f"blocks.{i}" for i in range(len(net.blocks))], "output"]
    eoc_mlp = model == "mlp" and init == "eoc" and source == "reference"
    diag = diagnose_network(net, x, y, layers=layers, eoc_act=act if eoc_mlp else None,
                            sigma_b=sigma_b, alignment=alignment, resolution=resolution,
                            profile_inputs=_THEORY_INPUTS, progress=True)
    out.mkdir(parents=True, exist_ok=True)
    plot_profile({"measured": diag.profile}, out / "profile.png",
                 theory={"measured": diag.profile_theory} if diag.profile_theory else None,
                 title=f"{source} {model if source != 'torchscript' else ''} {act}")
    figures = ["profile.png"]
    if diag.alignment is not None:
        plot_alignment(diag.alignment["values"], out / "alignment.png",
                       labels=diag.alignment["layers"],
                       title="layer tangent kernel / label alignment")
        figures.append("alignment.png")
    plot_output_field(diag.field, out / "output_field.png",
                      title="output on the plane x0 + s(x1-x0) + t(x2-x0)" if diag.plane else
                      "output over [0,1]^2")
    figures.append("output_field.png")
    doc = to_jsonable({"model": {k: (str(v) if isinstance(v, Path) else v)
                                 for k, v in args.items()},
                       "data": data, "examples": int(x.shape[0]), "figures": figures,
                       **diag.summary()})
    (out / "diagnose.json").write_text(json.dumps(doc, indent=2))
    typer.echo(f"wrote {', '.join(doc['figures'])} and diagnose.json to {out}", err=True)
    if as_json:
        typer.echo(json.dumps(doc, indent=2))


def register(app: typer.Typer) -> None:
    app.command("diagnose", help=_HELP)(diagnose)
