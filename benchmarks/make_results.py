"""Regenerate benchmarks/RESULTS.md from the result fragments in benchmarks/results/ and the zoo model cards.

    python benchmarks/make_results.py
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results"

SECTIONS = [  # (fragment stem, section title); missing fragments are listed as not yet measured
    ("sampler_overhead", "Sampler overhead and denoiser training speed (issue: foundation)"),
    ("datasets", "Dataset recipes (issue: offline data)"),
    ("datasets_mujoco", "MuJoCo dataset recipes: SAC behaviour policies, medium and medium-replay (issue: offline data)"),
    ("agent_speed", "Agent training throughput and decision latency"),
    ("kernel_speed", "Agent kernel: speed before and after, side by side (issue: one agent kernel)"),
    ("zoo_recheck", "Agent kernel: every zoo entry re-evaluated on its card's seeds, before and after"),
    ("zoo_slow_check", "Agent kernel: the slow zoo check on every entry"),
    ("faults", "Faults: kill, full disk, concurrent writers (issue: reliability)"),
    ("flow_speed", "Flow agents: training speed and decision latency (FQL, FlowBC vs Diffusion-QL)"),
    ("offline_pendulum", "Offline RL quality on Pendulum (ours vs d3rlpy)"),
    ("offline_mujoco", "Offline RL quality on Hopper / HalfCheetah (ours vs d3rlpy)"),
    ("curves_summary_40000", "Offline RL at 40k gradient steps across datasets: Diffusion-QL vs d3rlpy, 3 seeds"),
    ("curves_hopper_medium", "Offline learning curves on Hopper medium: Diffusion-QL vs d3rlpy up to 40k steps"),
    ("curves_hopper_medium_replay",
     "Offline learning curves on Hopper medium-replay: Diffusion-QL vs d3rlpy up to 40k steps"),
    ("curves_halfcheetah_medium",
     "Offline learning curves on HalfCheetah medium: Diffusion-QL vs d3rlpy up to 40k steps"),
    ("curves_pendulum_expert", "Offline learning curves on Pendulum expert: Diffusion-QL vs d3rlpy up to 40k steps"),
    ("curves_pendulum_medium", "Offline learning curves on Pendulum medium: Diffusion-QL vs d3rlpy up to 40k steps"),
    ("curves_pendulum_replay", "Offline learning curves on Pendulum replay: Diffusion-QL vs d3rlpy up to 40k steps"),
    ("curves_halfcheetah_medium_replay",
     "Offline learning curves on HalfCheetah medium-replay: Diffusion-QL vs d3rlpy up to 40k steps"),
    ("offline_cpql_recon", "CPQL BC term: consistency loss (paper) vs reconstruction loss (official code)"),
    ("offline_pendulum_planners", "Decision Diffuser and Diffusion Policy on Pendulum expert (longer budgets)"),
    ("offline_mujoco_planners", "Planners on Hopper / HalfCheetah (Diffuser and Decision Diffuser vs d3rlpy)"),
    ("planner_samplers_dd_hopper", "Planner act-time samplers and plan reuse: score and latency (Decision Diffuser, Hopper medium)"),
    ("planner_samplers_diffuser_hopper_mr", "Planner act-time samplers, plan reuse and warm start: score and latency (Diffuser zoo agent, Hopper medium-replay)"),
    ("online_cpql_pendulum", "Online CPQL vs SAC on Pendulum (learning curves)"),
    ("online_cpql_hopper", "Online CPQL vs SAC on Hopper-v5 (learning curves)"),
    ("offline_pointmaze", "Planners on PointMaze (Diffuser vs d3rlpy BC / IQL)"),
    ("maze_stall_validation", "PointMaze: choosing follow_stall_steps on validation seeds"),
    ("maze_radius_validation", "PointMaze: choosing follow_radius on validation seeds"),
    ("maze_support_validation", "PointMaze: choosing plan_selection (candidate plans by data support) on validation seeds"),
    ("toy_multimodal", "Mode coverage on the multimodal toy task"),
    ("distill", "Distilled 1-step actor vs its teacher"),
    ("tianshou_overhead", "Tianshou trainer overhead"),
    ("gpu_cpu", "Device benchmark on CPU (benchmarks/gpu.py; no GPU was available to this task)"),
    ("synther_fidelity", "SynthER fidelity"),
    ("synther_offline", "SynthER offline: TD3+BC on upsampled vs original data"),
    ("synther_world_model_hopper", "SynthER as a world model: one-step error of as_env, SAC trained inside it"),
    ("synther_online_idp", "SynthER online: SAC + SynthERReplayBuffer vs SAC on InvertedDoublePendulum-v5"),
    ("synther_online_hopper", "SynthER online: SAC + SynthERReplayBuffer vs SAC on Hopper-v5"),
    ("synther_online", "SynthER online (SAC), smoke run"),
    ("madiff", "MADiff on MPE simple_spread"),
    ("soak", "Soak: memory over long runs"),
]


def zoo_table() -> str:
    paths = sorted((HERE.parent / "zoo" / "cards").glob("*.json"))
    if not paths:
        return "No zoo entry has been trained yet.\n"
    cards = [json.loads(path.read_text()) for path in paths]
    agents = [c for c in cards if "episodes" in c["evaluation"]]
    generators = [c for c in cards if "samples" in c["evaluation"]]
    dtypes = sorted({c.get("weights_dtype", "float32") for c in cards})
    size = sum(c["weights_bytes"] for c in cards) / 2**20
    footer = (f"\nWeights stored as {' / '.join(dtypes)} (card field `weights_dtype`; loaded into float32 modules), "
              "inference-only: no optimizer states, and where the EMA copy is what acts, not the network it averages "
              "(`save(exclude=[\"optimizers\", \"training_weights\"])`; loading fills that network from the EMA copy); "
              f"{len(cards)} entries, {size:.1f} MiB in all (budget: 100 MiB).\n")
    return agent_table(agents) + (generator_table(generators) if generators else "") + footer


def agent_table(cards: list[dict]) -> str:
    lines = ["| zoo id | dataset | gradient steps | seed | return (mean ± std) | normalized | episodes | wall | "
             "d3rlpy BC / TD3+BC / IQL, same data and steps (normalized) | hardware |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for c in cards:
        ev = c["evaluation"]
        norm = f"{ev['normalized_mean']:.1f} ± {ev['normalized_std']:.1f}" if "normalized_mean" in ev else ""
        lines.append(f"| {c['id']} | {c['dataset']} | {c['gradient_steps']} | {c['seed']} | "
                     f"{ev['return_mean']:.1f} ± {ev['return_std']:.1f} | {norm} | {ev['episodes']} | "
                     f"{c['wall_time_s']:.0f} s | {_baselines(c)} | {c['hardware']} |")
    return "\n".join(lines) + "\n\nReproduce any row with `diffagents zoo train ID`; re-evaluate with " \
                              "`diffagents zoo eval ID`; baselines with `python benchmarks/zoo_baselines.py ID`.\n"


def generator_table(cards: list[dict]) -> str:
    lines = ["\n### Generators (SynthER)\n", "Judged by dynamics fidelity: the simulator is put in each sampled s and "
             "stepped with its a (`diffagents.agents.synthesis.synther_fidelity`); s' error is the per-dimension MSE divided by "
             "the data variance. Downstream: d3rlpy TD3+BC on the upsampled vs the original dataset "
             "(`benchmarks/synther_offline.py`).\n",
             "| zoo id | dataset | gradient steps | seed | reward abs err | s' standardised MSE (mean / median) | "
             "samples | wall | downstream TD3+BC, original → upsampled (normalized) | hardware |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for c in cards:
        ev, down = c["evaluation"], c.get("downstream", {})
        td3 = down.get("td3+bc", {})
        cell = (" → ".join(f"{td3[k]['normalized_mean']:.1f} ± {td3[k]['normalized_std']:.1f}"
                           for k in ("original", "synther") if k in td3)
                + f" ({down['steps']} steps, {len(down['seeds'])} seeds, +{down['synthetic']} synthetic)") \
            if td3 else "not run"
        lines.append(f"| {c['id']} | {c['dataset']} | {c['gradient_steps']} | {c['seed']} | "
                     f"{ev['reward_abs_mean']:.3g} | {ev['next_std_mse_mean']:.3g} / {ev['next_std_mse_median']:.3g} | "
                     f"{ev['samples']} | {c['wall_time_s']:.0f} s | {cell} | {c['hardware']} |")
    return "\n".join(lines) + "\n"


def _baselines(card: dict) -> str:
    base = card.get("baselines", {})
    cells = [f"{base[a]['normalized_mean']:.1f} ± {base[a]['normalized_std']:.1f}" if a in base and
             "normalized_mean" in base[a] else "–" for a in ("bc", "td3+bc", "iql")]
    cell = " / ".join(cells) if base else "not run"
    if "teacher" in card:  # a distilled student: its teacher's card score is the comparison that matters
        t = card["teacher"]["evaluation"]
        cell += f"; teacher `{card['teacher']['id']}`: {t['normalized_mean']:.1f} ± {t['normalized_std']:.1f}"
    return cell


def main() -> None:
    out = ["# diffagents benchmark results\n",
           "Every number below comes from a script in `benchmarks/` (command, seed and hardware next to it). The "
           "CPU machines have 2 shared cores: timings are taken with one torch thread and swing with co-tenant "
           "load, so compare ratios measured in the same run. This file is generated by "
           "`python benchmarks/make_results.py`.\n"]
    for stem, title in SECTIONS:
        out.append(f"## {title}\n")
        candidates = [RESULTS / f"{stem}{suffix}.md" for suffix in ("", "_quick", "_smoke")]
        frag = next((c for c in candidates if c.is_file()), candidates[0])
        if frag.is_file():
            body = frag.read_text().strip().splitlines()
            if body and body[0].startswith("# "):
                body = body[1:]
            notes = frag.with_name(f"{frag.stem}.notes.md")  # hand-written reading of a generated fragment
            if notes.is_file():
                body += ["", notes.read_text().strip()]
            out.append("\n".join(body).strip() + "\n")
        else:
            out.append("Not measured yet.\n")
    out.append("## Pretrained zoo\n")
    out.append(zoo_table())
    (HERE / "RESULTS.md").write_text("\n".join(out))
    print(f"wrote {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
