"""Reproduction ``covariance-cleaning``: top-eigenvalue bias and correlation cleaners.

(a) Monte Carlo on spiked covariances (one spike l, others 1) across q = N/T: the sample
top eigenvalue against the population spike, before and after the inverse-BBP de-biasing.
(b) Random market + sector factor models across q < 1: Frobenius error to the true
correlation and out-of-sample risk of the minimum-variance portfolio for the sample matrix,
clipping, Ledoit-Wolf, the RIE and the denoising autoencoder (trained once, on other
simulated factor models of the same family, for all the q of the grid).
"""

from __future__ import annotations

import numpy as np

from .._progress import track
from ..covariance import (
    bbp_threshold,
    clean_correlation,
    debias_top_eigenvalue,
    out_of_sample_risk_ratio,
    sample_correlation,
    simulate_factor_model,
    simulate_spiked_samples,
    spiked_top_eigenvalue,
)
from ._registry import Context, Experiment, Outcome, register

CLEANERS = ("sample", "clip", "ledoit-wolf", "rie", "autoencoder")


def _sizes(quick: bool) -> dict:
    if quick:
        return dict(n_bbp=150, reps_bbp=10, qs_bbp=(0.25, 0.5, 1.0, 2.0), n=60, reps=6,
                    qs=(0.25, 0.5, 0.8), ae_matrices=600, ae_epochs=60)
    return dict(n_bbp=400, reps_bbp=30, qs_bbp=(0.1, 0.25, 0.5, 1.0, 2.0), n=100, reps=30,
                qs=(0.1, 0.25, 0.5, 0.75, 0.9), ae_matrices=3000, ae_epochs=150)


def _top_eigenvalue(x: np.ndarray) -> float:
    """Top eigenvalue of X^T X / T, from the smaller of the two Gram matrices."""
    from scipy.linalg import eigh

    t, n = x.shape
    gram = x.T @ x if n <= t else x @ x.T
    k = gram.shape[0]
    return float(eigh(gram, eigvals_only=True, subset_by_index=[k - 1, k - 1])[0]) / t


def top_eigenvalue_bias(n: int, qs, reps: int, rng: np.random.Generator) -> list[dict]:
    """Monte Carlo of the sample top eigenvalue for spikes below and above the threshold."""
    records = []
    for q in track(qs, "top-eigenvalue Monte Carlo"):
        t = max(2, round(n / q))
        q_eff = n / t
        thr = bbp_threshold(q_eff)
        # One spike halfway to the threshold (undetectable), three at 1.5x, 2.5x, 4x it.
        for spike in (1.0 + 0.5 * (thr - 1.0), 1.5 * thr, 2.5 * thr, 4.0 * thr):
            tops = []
            for _ in range(reps):
                x = simulate_spiked_samples(n, t, spike, seed=rng)
                tops.append(_top_eigenvalue(x))
            tops = np.array(tops)
            deb = debias_top_eigenvalue(tops, q_eff)
            records.append({
                "q": q_eff, "N": n, "T": t, "spike": float(spike), "detectable": bool(spike > thr),
                "predicted_top": spiked_top_eigenvalue(spike, q_eff),
                "sample_top_mean": float(tops.mean()), "sample_top_std": float(tops.std()),
                "debiased_mean": float(deb.mean()), "debiased_std": float(deb.std()),
                "bias_before": float(tops.mean() - spike), "bias_after": float(deb.mean() - spike),
            })
    return records


def compare_cleaners(n: int, qs, reps: int, autoencoder, rng: np.random.Generator) -> list[dict]:
    """Mean Frobenius error and out-of-sample risk ratio per (q, cleaner)."""
    records = []
    for q in track(qs, "comparing cleaners"):
        t = round(n / q)
        frob = {m: [] for m in CLEANERS}
        risk = {m: [] for m in CLEANERS}
        for _ in range(reps):
            c_true, x = simulate_factor_model(n, t, seed=rng)
            s = sample_correlation(x)
            for m in CLEANERS:
                est = (autoencoder.transform(s, t) if m == "autoencoder"
                       else clean_correlation(s, t, m, samples=x))
                frob[m].append(float(np.linalg.norm(est - c_true)))
                risk[m].append(out_of_sample_risk_ratio(est, c_true))
        for m in CLEANERS:
            records.append({"q": n / t, "N": n, "T": t, "method": m,
                            "frobenius_mean": float(np.mean(frob[m])),
                            "frobenius_sem": float(np.std(frob[m]) / np.sqrt(reps)),
                            "risk_ratio_mean": float(np.mean(risk[m])),
                            "risk_ratio_sem": float(np.std(risk[m]) / np.sqrt(reps))})
    return records


def _winners(records: list[dict], key: str) -> dict[float, str]:
    out = {}
    for q in sorted({r["q"] for r in records}):
        rs = [r for r in records if r["q"] == q]
        out[q] = min(rs, key=lambda r: r[key])["method"]
    return out


def _run(ctx: Context) -> Outcome:
    from ..covariance import DenoisingAutoencoderCleaner
    from ..plots import plot_cleaner_comparison, plot_top_eigenvalue_bias

    sz = _sizes(ctx.quick)
    rng = np.random.default_rng(ctx.seed)
    bias = top_eigenvalue_bias(sz["n_bbp"], sz["qs_bbp"], sz["reps_bbp"], rng)

    ts = [round(sz["n"] / q) for q in sz["qs"]]
    ae = DenoisingAutoencoderCleaner(sz["n"]).fit(ts, n_matrices=sz["ae_matrices"],
                                                  epochs=sz["ae_epochs"], seed=ctx.seed)
    cleaners = compare_cleaners(sz["n"], sz["qs"], sz["reps"], ae, rng)

    plot_top_eigenvalue_bias(bias, ctx.path("top_eigenvalue_bias.png"))
    plot_cleaner_comparison(cleaners, ctx.path("cleaners.png"))

    det = [r for r in bias if r["detectable"]]
    rel_before = float(np.mean([abs(r["bias_before"]) / r["spike"] for r in det]))
    rel_after = float(np.mean([abs(r["bias_after"]) / r["spike"] for r in det]))
    n_smaller = sum(abs(r["bias_after"]) < abs(r["bias_before"]) for r in det)
    debias_ok = rel_after < rel_before
    by_q = {q: {r["method"]: r for r in cleaners if r["q"] == q}
            for q in sorted({r["q"] for r in cleaners})}
    beats_sample = {q: all(rs[m]["risk_ratio_mean"] < rs["sample"]["risk_ratio_mean"]
                           for m in CLEANERS if m != "sample") for q, rs in by_q.items()}
    win_risk = _winners(cleaners, "risk_ratio_mean")
    win_frob = _winners(cleaners, "frobenius_mean")
    claim_holds = bool(debias_ok and all(beats_sample.values()))

    lines = [
        f"(a) Top eigenvalue: over {len(det)} detectable (q, spike) pairs the mean relative "
        f"bias |E[lambda_hat] - l| / l of the sample top eigenvalue is {rel_before:.1%}; after "
        f"de-biasing it is {rel_after:.1%} (smaller in {n_smaller} of {len(det)} pairs). "
        "Below the threshold the sample top eigenvalue sits at the bulk edge and de-biasing "
        "returns 1 + sqrt(q), an upper bound.",
        "(b) Winners per q (lowest out-of-sample risk / lowest Frobenius error): " + "; ".join(
            f"q={q:.2f}: {win_risk[q]} / {win_frob[q]} (sample risk x{by_q[q]['sample']['risk_ratio_mean']:.2f}, "
            f"best x{by_q[q][win_risk[q]]['risk_ratio_mean']:.2f})" for q in by_q) + ".",
        "Every cleaner beats the sample matrix out of sample at every q." if all(beats_sample.values())
        else "Not every cleaner beats the sample matrix out of sample: at q = "
        + ", ".join(f"{q:.2f}" for q, ok in beats_sample.items() if not ok) + ".",
        "The autoencoder is scored on fresh draws from the family it was trained on "
        "(in-distribution), which favours it over the model-free RMT cleaners.",
    ]
    ran = (f"(a) {sz['reps_bbp']} Monte Carlo draws per (q, spike), N={sz['n_bbp']}, "
           f"q in {list(sz['qs_bbp'])}, spikes below and above 1 + sqrt(q). (b) N={sz['n']} "
           f"market + sector factor models, {sz['reps']} draws per q in {list(sz['qs'])}; "
           f"autoencoder trained on {sz['ae_matrices']} simulated pairs for {sz['ae_epochs']} epochs.")
    return Outcome(
        result={"top_eigenvalue_bias": bias, "cleaners": cleaners, "winner_risk": win_risk,
                "winner_frobenius": win_frob, "debiasing_reduces_bias": debias_ok,
                "mean_relative_bias_before": rel_before, "mean_relative_bias_after": rel_after,
                "all_cleaners_beat_sample": beats_sample,
                "autoencoder_final_train_loss": ae.train_loss[-1]},
        figures=["top_eigenvalue_bias.png", "cleaners.png"],
        ran=ran,
        observed=" ".join(lines),
        claim_holds=claim_holds,
    )


register(Experiment(
    name="covariance-cleaning",
    description="Top-eigenvalue de-biasing (BBP) and correlation cleaners (clip, LW, RIE, autoencoder)",
    paper="arXiv 1708.03551; arXiv 1708.02985",
    claim=("The sample top eigenvalue overestimates a population spike above 1 + sqrt(q) as "
           "l(1 + q/(l-1)), and inverting that relation removes most of the bias; cleaning the "
           "sample correlation matrix (clipping, Ledoit-Wolf, RIE, a denoising autoencoder) "
           "lowers the out-of-sample risk of minimum-variance portfolios."),
    run=_run,
))
