"""Distilled zoo entries (``algo: DistilledPolicy``, ``teacher: <zoo id>``): one-step actors distilled from a teacher.

The recipe names a trained zoo entry as its ``teacher`` (a DiffusionQL, IDQL or DiffusionPolicy on the same
dataset); ``diffagents zoo train ID`` loads that teacher from the zoo and runs consistency distillation
(:func:`diffagents.distill`, Song et al. 2023, Alg. 2) for the recipe's ``steps``. Recipe hyperparameters are
:class:`~diffagents.agents.policies.distill.DistillConfig` fields (``n_levels``, ``ema_decay``, ``n_candidates``, ...).
The trained student is an ordinary single agent: it loads, evaluates and renders without its teacher.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from diffagents.zoo.single_agent import SingleAgent

if TYPE_CHECKING:
    from diffagents.zoo.catalog import ZooEntry

    from diffagents.agents.policies.distill import DistilledPolicy


class Distilled(SingleAgent):
    """How the registry builds and trains distilled entries (save / load / evaluate as for single agents)."""

    resumable = False  # the student is rebuilt from its zoo teacher on each call; not resumed here

    @classmethod
    def build(cls, entry: ZooEntry, dataset: Any, env: Any, device: str) -> DistilledPolicy:
        from diffagents.zoo.catalog import _entry

        from diffagents import distill

        assert entry.teacher is not None
        teacher_entry = _entry(entry.teacher)
        if teacher_entry.dataset != entry.dataset:
            raise ValueError(f"zoo recipe {entry.id}: teacher {entry.teacher!r} was trained on "
                             f"{teacher_entry.dataset!r}, expected the recipe's dataset {entry.dataset!r}")
        teacher = SingleAgent.load(teacher_entry, env, device)  # a distillable teacher is a plain Gymnasium agent
        return distill(teacher, steps=0, dataset=dataset, seed=entry.seed, **cls.hyperparameters(entry))

    @staticmethod
    def card_extra(entry: ZooEntry) -> dict[str, Any]:
        """The teacher's id and its card's evaluation, to read the score change next to the student's."""
        from diffagents.zoo.catalog import card

        assert entry.teacher is not None
        return {"teacher": {"id": entry.teacher, "evaluation": card(entry.teacher)["evaluation"]}}
