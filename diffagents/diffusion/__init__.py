"""Axis 2: the generative process (schedules, forward noising, targets) and weight-free samplers."""

from diffagents.diffusion.consistency import ConsistencySampler, consistency_scalings, karras_sigmas
from diffagents.diffusion.discrete import DiscreteSampler, level_tensors, select_timesteps
from diffagents.diffusion.dpm_solver import DPMSolverPPSampler
from diffagents.diffusion.edm import EDMHeunSampler, EDMProcess
from diffagents.diffusion.loop import Guide, Sampler, sample_loop
from diffagents.diffusion.process import GaussianDiffusion, split_prediction
from diffagents.diffusion.samplers import DDIMSampler, DDPMSampler, make_sampler
from diffagents.diffusion.schedules import NoiseSchedule, cosine_betas, linear_betas, vp_betas

__all__ = [
    "ConsistencySampler", "DDIMSampler", "DDPMSampler", "DPMSolverPPSampler", "DiscreteSampler", "EDMHeunSampler",
    "EDMProcess", "GaussianDiffusion",
    "Guide", "NoiseSchedule", "Sampler", "consistency_scalings", "cosine_betas", "karras_sigmas", "linear_betas",
    "level_tensors", "make_sampler", "sample_loop", "select_timesteps", "split_prediction", "vp_betas",
]
