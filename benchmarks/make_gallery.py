"""Regenerate ``docs/gallery/``: figures and a GIF made from what the repository has, with captions.

* the zoo agent's episode as a small GIF (``diffagents.zoo.enjoy.record_episode``, downscaled);
* the zoo agent's states and predicted actions over one episode (``diffagents.plots.plot_rollout``);
* a Diffuser's planned vs executed trajectory on PointMaze UMaze (``diffagents.plots.plot_plan``) and its
  training-loss curve (``plot_learning_curves``): a planner from the zoo if there is one, else a tiny Diffuser
  trained here for ``--steps`` gradient steps (a short-budget illustration, said so in the caption);
* links to the PNGs the benchmarks wrote (``benchmarks/results/*.png``; linked, not copied);

then writes ``docs/gallery/README.md`` with a caption and the command behind every item.

    OMP_NUM_THREADS=1 python benchmarks/make_gallery.py            # about 5-7 min on 2 shared CPU cores
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from diffagents.data.safe_env import make_env_from_dataset

ROOT = Path(__file__).resolve().parents[1]
GALLERY = ROOT / "docs" / "gallery"
ZOO_ID = "diffusionql-pendulum-expert"
COMMAND = "OMP_NUM_THREADS=1 python benchmarks/make_gallery.py"
#: Small Diffuser in maze mode (docs/compute-budget.md Sec. 7 "maze, small"): plan x-y-velocity windows with
#: the goal inpainted at the end, track them with a PD controller, replan when a plan runs out.
MAZE_DIFFUSER = dict(horizon=64, dim=16, dim_mults=(1, 2, 4), n_diffusion_steps=32, batch_size=32, state_dims=4,
                     goal_obs_dims=(4, 6), execution="track", replan_every=None, value_guidance=False, n_samples=1,
                     ema_start=100, learning_rate=1e-3)


def zoo_items(steps: int) -> list[dict[str, str]]:
    """The zoo agent's GIF and rollout plot."""
    from diffagents.zoo.enjoy import record_episode

    from diffagents import zoo
    from diffagents.plots import plot_rollout

    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    gif = record_episode(ZOO_ID, GALLERY / f"{ZOO_ID}.gif", seed=0, max_steps=steps, fps=20, scale=0.4)
    env = zoo.make_env(ZOO_ID)
    ro = plot_rollout(zoo.load(ZOO_ID, env=env, device="cpu"), env, 0, GALLERY / f"{ZOO_ID}-rollout.png")
    card = zoo.card(ZOO_ID)
    trained = f"{card.get('gradient_steps', '?')} gradient steps on `{card.get('dataset', '?')}`"
    return [
        {"file": gif.name, "title": f"Zoo agent `{ZOO_ID}` swinging up Pendulum-v1",
         "caption": f"The pretrained Diffusion-QL agent shipped in the package ({trained}), first {steps} steps "
                    "of a deterministic episode (seed 0), frames downscaled to 40 %.",
         "command": f"`diffagents zoo enjoy {ZOO_ID}` (full size), or `{COMMAND}`"},
        {"file": f"{ZOO_ID}-rollout.png", "title": f"`{ZOO_ID}`: states and actions over one episode",
         "caption": f"cos(theta), sin(theta), angular velocity and the predicted torque of the same agent over a "
                    f"full 200-step episode (seed 0, return {ro.ret:.1f}).",
         "command": f"`python examples/zoo_plot_plan.py --id {ZOO_ID}`, or `{COMMAND}`"},
    ]


def maze_items(steps: int, size: int) -> list[dict[str, str]]:
    """A Diffuser's plan vs executed trajectory on PointMaze UMaze, and its training loss."""
    from stable_baselines3.common.callbacks import BaseCallback

    from diffagents import Diffuser, zoo
    from diffagents.data import make_dataset
    from diffagents.plots import plot_learning_curves, plot_plan

    planners = [r["id"] for r in zoo.list_agents() if r["algo"] == "Diffuser" and "pointmaze-umaze" in r["id"]]
    if planners:
        env = zoo.make_env(planners[0])
        agent, budget = zoo.load(planners[0], env=env, device="cpu"), f"zoo agent `{planners[0]}`"
        losses: list[tuple[int, float]] = []
    else:
        ds = make_dataset("diffagents/pointmaze/umaze-v0", size=size)
        env = make_env_from_dataset(ds)
        agent = Diffuser(env=env, dataset=ds, seed=0, device="cpu", **MAZE_DIFFUSER)
        losses = []

        class LossLog(BaseCallback):
            def _on_step(self) -> bool:
                if self.num_timesteps % 25 == 0:
                    losses.append((self.num_timesteps, float(self.locals["stats"]["diffusion_loss"])))
                return True

        t0 = time.perf_counter()
        agent.learn(steps, callback=LossLog())
        budget = (f"a small Diffuser (dim 16, mults (1, 2, 4), horizon 64, 32 diffusion steps) trained here for only "
                  f"{steps} gradient steps ({time.perf_counter() - t0:.0f} s on one CPU thread) on "
                  f"`make_dataset('diffagents/pointmaze/umaze-v0', size={size})`")
    ro = plot_plan(agent, env, 0, GALLERY / "diffuser-umaze-plan.png", title="Diffuser on PointMaze UMaze: "
                   "planned (dashed) vs executed")
    c = agent.config
    how = ("followed as a path (`execution=\"follow\"`: the PD law chases the first planned position more than "
           f"{c.follow_radius} away)" if c.execution == "follow" else "tracked step by step by a PD controller")
    caption = (f"Maze mode: the start state and the goal are inpainted into a {c.horizon}-step x-y-velocity plan, "
               f"{how} ({len(ro.plans)} plan(s) in this 300-step episode, seed 0, return {ro.ret:.0f}). Walls in "
               "grey, goal as a star.")
    if planners:
        card = zoo.card(planners[0])
        caption = (f"The {budget} ({card['gradient_steps']} gradient steps, "
                   f"{card['evaluation']['normalized_mean']:.1f} normalized over 20 episodes on its card). " + caption)
    else:
        caption = (f"Short-budget illustration, not a tuned result: {budget}. " + caption + " At such budgets the "
                   "plans are rough (they can jump away from the inpainted start and cut through walls).")
    items = [{"file": "diffuser-umaze-plan.png", "title": "Diffuser: planned vs executed trajectory, PointMaze UMaze",
              "caption": caption, "command": f"`{COMMAND}`" if planners else f"`{COMMAND} --steps {steps}`"}]
    if losses:
        xs, ys = zip(*losses)
        plot_learning_curves({"Diffuser (maze mode)": (list(xs), list(ys))}, GALLERY / "diffuser-umaze-loss.png",
                             xlabel="gradient step", ylabel="diffusion training loss",
                             title=f"Diffuser on PointMaze UMaze, {steps} steps")
        items.append({"file": "diffuser-umaze-loss.png", "title": "Diffuser training loss (the run above)",
                      "caption": "Diffusion (x0-prediction) loss of the same short run, every 25 gradient steps.",
                      "command": f"`{COMMAND} --steps {steps}`"})
    return items


def benchmark_items() -> list[dict[str, str]]:
    """Links to the PNGs in benchmarks/results/ (each benchmark's markdown holds its command)."""
    items = []
    for png in sorted((ROOT / "benchmarks" / "results").glob("*.png")):
        md = png.with_suffix(".md")
        items.append({"file": os.path.relpath(png, GALLERY), "title": f"Benchmark figure `{png.name}`",
                      "caption": f"Written by a benchmark script; numbers, seeds and hardware in "
                                 f"[{md.name}]({os.path.relpath(md, GALLERY)}).",
                      "command": "see the command at the top of the linked report"})
    return items


def write_readme(items: list[dict[str, str]]) -> None:
    lines = ["# Gallery\n", f"Regenerated by `{COMMAND}` ({time.strftime('%Y-%m-%d')}); every item names the "
             "command that made it. Short-budget illustrations say so; the numbers we stand behind are in "
             "[benchmarks/RESULTS.md](../../benchmarks/RESULTS.md).\n"]
    for it in items:
        lines += [f"## {it['title']}\n", f"![{it['title']}]({it['file']})\n", f"{it['caption']}\n",
                  f"Command: {it['command']}\n"]
    (GALLERY / "README.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=6000, help="Diffuser gradient steps (when no zoo planner exists)")
    p.add_argument("--size", type=int, default=20_000, help="PointMaze UMaze dataset steps")
    p.add_argument("--gif-steps", type=int, default=100, help="frames of the zoo agent's GIF")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    GALLERY.mkdir(parents=True, exist_ok=True)
    items = zoo_items(args.gif_steps) + maze_items(args.steps, args.size) + benchmark_items()
    write_readme(items)
    for f in sorted(GALLERY.iterdir()):
        print(f"{f.relative_to(ROOT)}: {f.stat().st_size / 1024:.0f} KiB", file=sys.stderr)


if __name__ == "__main__":
    main()
