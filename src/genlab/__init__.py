"""genlab: autoencoders, VAEs, GANs and diffusion, from classroom toys to real images."""

__version__ = "0.1.0"
