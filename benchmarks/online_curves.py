"""Shared pieces of the online benchmarks: an evaluation-curve callback, returns at env-step budgets, plots.

Used by ``synther_online.py`` (SAC vs SAC + SynthER) and ``online_cpql.py`` (online CPQL vs SAC), so both report
the same quantities: deterministic evaluation every ``eval_every`` env steps, the return of the last evaluation
at or before each budget (mean +- std over seeds), and mean +- std learning curves.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Curve = list[tuple[int, float, float]]  # (env steps, mean return, std return)


def eval_curve_callback(eval_env: Any, every: int, episodes: int, curve: Curve) -> Any:
    """An SB3 callback appending ``(num_timesteps, mean, std)`` of ``evaluate_policy`` to ``curve``."""
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy

    class EvalCurve(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % every == 0:
                res: Any = evaluate_policy(self.model, eval_env, n_eval_episodes=episodes, deterministic=True)
                curve.append((int(self.num_timesteps), float(res[0]), float(res[1])))
            return True

    return EvalCurve()


def at_budget(curve: Curve, budget: int) -> float:
    """Return of the last evaluation at or before ``budget`` env steps (NaN if none)."""
    vals = [m for s, m, _ in curve if s <= budget]
    return vals[-1] if vals else float("nan")


def default_budgets(steps: int, eval_every: int) -> list[int]:
    """Quarters of ``steps``, rounded onto the evaluation grid."""
    return sorted({max(1, round(steps * k / 4 / eval_every)) * eval_every for k in (1, 2, 3, 4)})


def budget_table(runs: list[dict[str, Any]], variants: list[str], budgets: list[int]) -> dict[str, dict[str, Any]]:
    """Per variant: mean/std over seeds of the return at each budget, and the mean wall time."""
    table: dict[str, dict[str, Any]] = {}
    for v in variants:
        rs = [r for r in runs if r["variant"] == v]
        vals = np.array([[at_budget(r["curve"], b) for b in budgets] for r in rs])
        table[v] = {"mean": vals.mean(axis=0).tolist(), "std": vals.std(axis=0).tolist(),
                    "wall_s": float(np.mean([r["wall_s"] for r in rs]))}
    return table


def plot_curves(runs: list[dict[str, Any]], path: Path, title: str) -> None:
    """Mean +- std evaluation return against env steps, one line per variant (:func:`diffagents.plots`)."""
    from diffagents.plots import plot_learning_curves

    curves = {}
    for variant in sorted({r["variant"] for r in runs}):
        per_seed = [r["curve"] for r in runs if r["variant"] == variant]
        n = min(len(c) for c in per_seed)
        label = f"{variant} ({len(per_seed)} seed{'s' if len(per_seed) > 1 else ''})"
        curves[label] = ([s for s, _, _ in per_seed[0][:n]], [[m for _, m, _ in c[:n]] for c in per_seed])
    plot_learning_curves(curves, path, xlabel="env steps", title=title)


def table_lines(table: dict[str, dict[str, Any]], budgets: list[int],
                extra: dict[str, Callable[[dict[str, Any]], str]] | None = None) -> list[str]:
    """Markdown rows: return at each budget (mean +- std over seeds), wall time, then ``extra`` columns."""
    extra = extra or {}
    lines = ["| variant | " + " | ".join(f"return @ {b}" for b in budgets) + " | wall s per run |"
             + "".join(f" {name} |" for name in extra),
             "|---|" + "---:|" * (len(budgets) + 1 + len(extra))]
    for v, row in table.items():
        cells = [f"{m:.1f} ± {s:.1f}" for m, s in zip(row["mean"], row["std"])]
        lines.append(f"| {v} | " + " | ".join(cells) + f" | {row['wall_s']:.0f} |"
                     + "".join(f" {fn(row)} |" for fn in extra.values()))
    return lines


def finish_report(out: str, lines: list[str], cmd: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Append the figure and command lines, write ``results/<out>.{md,json}`` and print the report."""
    from benchmarks.common import write

    lines = [*lines, "", f"Learning curves: `{out}.png`.", "", f"Command: `{cmd}`"]
    write(out, payload, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return payload
