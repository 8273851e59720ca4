"""Axis 3: steering samples (inpainting, classifier-free guidance, gradient guidance)."""

from diffagents.guidance.cfg import ClassifierFreeGuidance
from diffagents.guidance.gradient import GradientGuide
from diffagents.guidance.inpainting import Inpaint

__all__ = ["ClassifierFreeGuidance", "GradientGuide", "Inpaint"]
