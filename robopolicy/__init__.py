"""robopolicy: diffusion and flow-matching visuomotor policies, from demonstrations to an arm."""

__version__ = "0.1.0"
