"""The noise schedule of a diffusion model, on its own: no weights, only the numbers the sampler needs.

Notation of Ho et al. ("Denoising Diffusion Probabilistic Models", 2020), with one change: timesteps are
indices t = 0 .. T-1 here, where the paper counts 1 .. T. So alpha_bar[t] is the paper's alpha_bar_{t+1},
and "t - 1 = -1" is x_0 itself, with alpha_bar_{-1} = 1.

  forward   q(x_t | x_0)        = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)             (Ho eq. 4)
  posterior q(x_{t-1} | x_t, x_0) = N(mu_tilde(x_t, x_0), beta_tilde_t I)                   (Ho eq. 6-7)
  samplers  ancestral DDPM (Ho alg. 2) and DDIM (Song et al. 2021, eq. 12), both stepping from t to any
            earlier t_prev, so either can run on a subsequence of the T timesteps.

Everything is computed in float64 and cast to the data's dtype at the end: beta_1 = 1e-4 is below float32's
resolution of numbers near 1, so 1 - alpha_bar_t / alpha_bar_{t-1} would round badly in float32.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def linear_betas(num_timesteps: int) -> torch.Tensor:
    """Ho et al. sec. 4: betas rise linearly from 1e-4 to 0.02 over T = 1000 steps. For other T both ends
    scale by 1000 / T, as in Nichol & Dhariwal's code, so alpha_bar_T stays near 0 (x_T is pure noise)."""
    scale = 1000 / num_timesteps
    if scale * 0.02 >= 1:
        raise ValueError(f"the linear schedule needs num_timesteps > 20 (its last beta would be "
                         f"{scale * 0.02:.2f}, not below 1), got {num_timesteps}: raise it or use schedule=cosine")
    return torch.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=torch.float64)


def cosine_betas(num_timesteps: int, s: float = 0.008) -> torch.Tensor:
    """Nichol & Dhariwal 2021, eq. 17: alpha_bar(t) = f(t) / f(0), f(t) = cos^2(((t/T + s) / (1 + s)) pi/2);
    beta_t = 1 - alpha_bar(t) / alpha_bar(t-1), clipped at 0.999 to avoid the singularity at t = T."""
    steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)


SCHEDULES = {"linear": linear_betas, "cosine": cosine_betas}


def _per_example(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A scalar or a (B,) tensor of coefficients, shaped to broadcast over x (B, ...), in x's dtype."""
    values = values.to(x.dtype)
    return values.view(-1, *[1] * (x.dim() - 1)) if values.dim() == 1 else values


class NoiseSchedule(nn.Module):
    """betas, alphas and alpha_bar for T timesteps, and the math of q and of one sampler step.

    A module only so that `.to(device)` moves its tables along with the network; they are buffers kept
    out of the state dict, since they follow from (name, T) in the model's config.
    """

    def __init__(self, num_timesteps: int = 1000, name: str = "linear"):
        super().__init__()
        if name not in SCHEDULES:
            raise ValueError(f"unknown noise schedule {name!r}: choose one of {', '.join(SCHEDULES)}")
        if num_timesteps < 1:
            raise ValueError(f"num_timesteps must be at least 1, got {num_timesteps}")
        self.name = name
        self.num_timesteps = num_timesteps
        betas = SCHEDULES[name](num_timesteps)  # (T,) float64
        self.register_buffer("betas", betas, persistent=False)
        self.register_buffer("alphas", 1 - betas, persistent=False)
        self.register_buffer("alpha_bar", torch.cumprod(1 - betas, dim=0), persistent=False)  # prod_{s<=t} alpha_s

    def alpha_bar_at(self, t: torch.Tensor | int) -> torch.Tensor:
        """alpha_bar_t for t in -1 .. T-1 (a scalar or a (B,) tensor), with alpha_bar_{-1} = 1: x_0 itself."""
        t = torch.as_tensor(t, device=self.alpha_bar.device)
        return torch.where(t >= 0, self.alpha_bar[t.clamp(min=0)], torch.ones((), dtype=torch.float64,
                                                                               device=t.device))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor | int, noise: torch.Tensor) -> torch.Tensor:
        """x_t ~ q(x_t | x_0) = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise  (Ho eq. 4). t: int or (B,)."""
        alpha_bar = self.alpha_bar_at(t)
        return _per_example(alpha_bar.sqrt(), x0) * x0 + _per_example((1 - alpha_bar).sqrt(), x0) * noise

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor | int, eps: torch.Tensor) -> torch.Tensor:
        """Invert eq. 4 for x_0 given the noise: (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)
        (Ho eq. 15; the "predicted x_0" of Song et al. eq. 12)."""
        alpha_bar = self.alpha_bar_at(t)
        return (x_t - _per_example((1 - alpha_bar).sqrt(), x_t) * eps) / _per_example(alpha_bar.sqrt(), x_t)

    def posterior_mean_variance(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int,
                                t_prev: torch.Tensor | int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (shaped as x_t) and variance (scalar or (B,)) of q(x_{t_prev} | x_t, x_0); t_prev defaults to t - 1.

        Ho eq. 7:  mu_tilde = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x_0
                            + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t
                   beta_tilde = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t
        For an earlier t_prev the same formulas hold with alpha_t = alpha_bar_t / alpha_bar_{t_prev}: the
        forward process from t_prev to t is one Gaussian step of that size (Nichol & Dhariwal's respacing).
        """
        t = torch.as_tensor(t, device=self.alpha_bar.device)
        alpha_bar = self.alpha_bar_at(t)
        alpha_bar_prev = self.alpha_bar_at(t - 1 if t_prev is None else t_prev)
        alpha = alpha_bar / alpha_bar_prev
        beta = 1 - alpha
        x0_coef = alpha_bar_prev.sqrt() * beta / (1 - alpha_bar)
        xt_coef = alpha.sqrt() * (1 - alpha_bar_prev) / (1 - alpha_bar)
        mean = _per_example(x0_coef, x0) * x0 + _per_example(xt_coef, x_t) * x_t
        variance = (1 - alpha_bar_prev) / (1 - alpha_bar) * beta
        return mean, variance.to(x_t.dtype)

    def timesteps(self, steps: int | None = None) -> list[int]:
        """The `steps` timesteps a sampler visits, from T-1 down to 0, evenly spaced (all T when None)."""
        steps = self.num_timesteps if steps is None else steps
        if not 1 <= steps <= self.num_timesteps:
            raise ValueError(f"sampling steps must be between 1 and num_timesteps={self.num_timesteps}, got {steps}")
        if steps == 1:
            return [self.num_timesteps - 1]
        # round(linspace) keeps both ends, so the first step starts from pure noise and the last lands on x_0;
        # the values are distinct because consecutive ones differ by (T-1)/(steps-1) >= 1 before rounding.
        return torch.linspace(self.num_timesteps - 1, 0, steps, dtype=torch.float64).round().long().tolist()

    def ddpm_step(self, eps: torch.Tensor, x_t: torch.Tensor, t: int, t_prev: int,
                  noise: torch.Tensor | None = None, clip: float | None = None) -> torch.Tensor:
        """Ancestral sampling (Ho alg. 2): x_{t_prev} ~ N(mu_tilde(x_t, x0_hat), beta_tilde I), where x0_hat is
        the x_0 that the predicted noise implies (eq. 15), clamped to [-clip, clip] when clip is given.

        Unclamped, mu_tilde(x_t, x0_hat) is exactly alg. 2's 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t)
        eps). The variance is beta_tilde, one of Ho et al.'s two choices (sec. 3.2, they found both similar);
        with it this step equals a DDIM step with eta = 1. `noise` may be None only on the last step (t_prev = -1),
        where beta_tilde = 0.
        """
        x0 = self.predict_x0(x_t, t, eps)
        if clip is not None:
            x0 = x0.clamp(-clip, clip)
        mean, variance = self.posterior_mean_variance(x0, x_t, t, t_prev)
        if t_prev < 0:
            return mean
        return mean + variance.sqrt() * noise

    def ddim_step(self, eps: torch.Tensor, x_t: torch.Tensor, t: int, t_prev: int, eta: float = 0.0,
                  noise: torch.Tensor | None = None, clip: float | None = None) -> torch.Tensor:
        """DDIM (Song et al. 2021, eq. 12):

            x_{t_prev} = sqrt(alpha_bar_prev) x0_hat + sqrt(1 - alpha_bar_prev - sigma^2) eps + sigma z
            sigma = eta sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_prev)  (eq. 16)

        eta = 0 is deterministic (the noise is not used); eta = 1 makes sigma^2 = beta_tilde, the DDPM step.
        When x0_hat is clamped, eps is recomputed from it so that the two stay consistent with x_t (as diffusers does).
        """
        if eta < 0:
            raise ValueError(f"eta must be >= 0 (0: deterministic DDIM, 1: DDPM's variance), got {eta}")
        x0 = self.predict_x0(x_t, t, eps)
        alpha_bar, alpha_bar_prev = self.alpha_bar_at(t), self.alpha_bar_at(t_prev)
        if clip is not None:
            x0 = x0.clamp(-clip, clip)
            eps = (x_t - _per_example(alpha_bar.sqrt(), x_t) * x0) / _per_example((1 - alpha_bar).sqrt(), x_t)
        sigma = eta * ((1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev)).sqrt()
        direction = (1 - alpha_bar_prev - sigma**2).clamp(min=0).sqrt()  # "direction pointing to x_t"
        x_prev = _per_example(alpha_bar_prev.sqrt(), x_t) * x0 + _per_example(direction, x_t) * eps
        if eta == 0 or t_prev < 0:
            return x_prev
        return x_prev + _per_example(sigma, x_t) * noise
