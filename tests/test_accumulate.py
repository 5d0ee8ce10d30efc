"""Gradient accumulation (TrainConfig.accumulate): k micro-batches of a batch, their gradients summed into one
optimizer step, train like one pass over the whole batch, to float rounding, wherever no layer sees the batch.

Tolerance: the same math summed in another order. A micro-batch's mean loss times 1/k, backward, and the k
gradients added, against one mean over the whole batch: float32 sums in another order, about 1e-7 relative per
gradient; Adam then divides each moment by its own root (sign-like steps), so a few steps keep the parameters
within ~1e-6 of each other, not bit-exact. Adam is also why the gradients themselves are compared: Adam's step is
the same for a gradient k times too large, so the parameters alone would not see a missing 1/k.
"""

from __future__ import annotations

import zlib

import pytest
import torch

from cli_helpers import invoke, user_error
from conftest import set_step
from genlab import checkpoint as ckpt
from genlab.distributed import Ranks
from genlab.models import family
from genlab.models.gan import GANConfig, discriminator_update
from genlab.models.layers import micro_batches
from genlab.train import TrainConfig, _check_share, train
from test_distributed import TINY, latest, ok, single, torchrun
from test_train import assert_same_checkpoint, make_run, metrics, without_speed

PARAMETERS = {"rtol": 1e-5, "atol": 1e-6}  # see the module docstring
GRADIENTS = {"rtol": 1e-4, "atol": 1e-7}  # one backward pass: float32 sums in another order, no Adam in between


class FixedDraws:
    """Random draws that depend on how many rows were drawn before, not on how the batch was split: with the global
    RNG, k micro-batches draw k small tensors where one pass draws one large one (and DDPM interleaves timesteps and
    noise), so their numbers differ. Here a draw of (n, *rest) without a generator takes the next n rows of a seeded
    table of its own kind, the same rows whatever the split."""

    def __init__(self, monkeypatch):
        self.real = {name: getattr(torch, name) for name in ("randn", "rand", "randint", "randn_like")}
        self.tables: dict[tuple, torch.Tensor] = {}
        self.used: dict[tuple, int] = {}
        monkeypatch.setattr(torch, "randn", self.drawing("randn"))
        monkeypatch.setattr(torch, "rand", self.drawing("rand"))
        monkeypatch.setattr(torch, "randn_like", lambda x, **kw: self.rows("randn", tuple(x.shape)).to(x))
        monkeypatch.setattr(torch, "randint", self.randint)

    def drawing(self, name: str):
        def draw(*size, generator=None, device=None, dtype=None, **kwargs):
            if generator is not None or kwargs:
                return self.real[name](*size, generator=generator, device=device, dtype=dtype, **kwargs)
            shape = tuple(size[0]) if len(size) == 1 and not isinstance(size[0], int) else size
            return self.rows(name, shape).to(device=device, dtype=dtype or torch.float32)
        return draw

    def randint(self, high, size, *, device=None, generator=None, **kwargs):
        if generator is not None or kwargs or not isinstance(high, int):
            return self.real["randint"](high, size, device=device, generator=generator, **kwargs)
        return self.rows("randint", tuple(size), high).to(device)

    def rows(self, name: str, shape: tuple, high: int | None = None) -> torch.Tensor:
        key = (name, shape[1:], high)
        n, start = shape[0], self.used.get(key, 0)
        while len(self.tables.get(key, ())) < start + n:  # grown in fixed blocks: the same table in every run
            block = torch.Generator().manual_seed(zlib.crc32(repr(key).encode()) + len(self.tables.get(key, ())))
            more = (self.real["randint"](high, (1024, *shape[1:]), generator=block) if name == "randint"
                    else self.real[name](1024, *shape[1:], generator=block))
            self.tables[key] = torch.cat([self.tables[key], more]) if key in self.tables else more
        self.used[key] = start + n
        return self.tables[key][start : start + n]


CASES = {  # name -> (family, model settings, data shape); none has a layer that sees the batch
    "ae-conv": ("ae", {"architecture": "conv", "conv_channels": (4, 8), "latent_dim": 3, "noise_std": 0.2}, (1, 8, 8)),
    "vae": ("vae", {"architecture": "mlp", "hidden_dims": (16,), "latent_dim": 2}, (1, 8, 8)),
    "vqvae": ("vqvae", {"architecture": "mlp", "hidden_dims": (16,), "num_codes": 8}, (1, 8, 8)),
    "ddpm": ("ddpm", {"architecture": "mlp", "hidden_dims": (32,), "num_timesteps": 50, "ema_decay": 0.9}, (2,)),
    # two D updates per G update, R1 and the EMA generator (WGAN-GP: see the critic's test below)
    "gan": ("gan", {"architecture": "mlp", "hidden_dims": (16, 16), "latent_dim": 4, "n_critic": 2,
                    "r1_weight": 1.0, "ema_decay": 0.9}, (2,)),
}
BATCH, STEPS = 16, 3


def trained(case: tuple, accumulate: int, monkeypatch) -> torch.nn.Module:
    """The case's model after STEPS steps of its family's own step on fixed batches and fixed random draws."""
    family_name, settings, shape = case
    recipe = family(family_name)
    torch.manual_seed(0)
    model = recipe.model(recipe.config(data_shape=shape, **settings))
    optimizers = recipe.optimizers(model, 1e-2)
    per_step = recipe.batches_per_step(model.config) if recipe.batches_per_step else 1
    data = torch.rand(STEPS, per_step * BATCH, *shape, generator=torch.Generator().manual_seed(1))
    with monkeypatch.context() as patch:
        FixedDraws(patch)
        for x in data:
            recipe.step(model, optimizers, x, accumulate=accumulate)
    return model


@pytest.mark.parametrize("accumulate", [2, 4])
@pytest.mark.parametrize("case", list(CASES))
def test_micro_batches_train_like_the_whole_batch(case, accumulate, monkeypatch):
    one, split = trained(CASES[case], 1, monkeypatch), trained(CASES[case], accumulate, monkeypatch)
    for (name, a), b in zip(one.named_parameters(), split.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, **GRADIENTS, msg=f"the last step's gradient of {name}")
    for (name, a), b in zip(one.state_dict().items(), split.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, **PARAMETERS, msg=name)  # weights, EMA copies and their counters


def test_a_critic_update_with_its_gradient_penalty_sums_like_the_whole_batch(monkeypatch):
    """WGAN-GP's critic, one update: the same gradient, penalty and terms from 4 micro-batches. Only one update:
    a linear critic loss (WGAN's, hinge's inside its margin) cancels some gradients exactly, E_fake[1] - E_real[1]
    for a bias whose units are all active, to a rounding error whose sign Adam's first, sign-like step turns into
    a whole step of lr either way; later steps would compare those coin flips, not the accumulation."""
    config = GANConfig(data_shape=(2,), architecture="mlp", hidden_dims=(16, 16), loss="wgan-gp")
    real = torch.rand(BATCH, 2, generator=torch.Generator().manual_seed(1))
    results = []
    for accumulate in (1, 4):
        torch.manual_seed(0)
        model = family("gan").model(config)
        optimizer = family("gan").optimizers(model, 1e-2)["discriminator"]
        with monkeypatch.context() as patch:
            FixedDraws(patch)
            terms, fakes = discriminator_update(model, optimizer, real, accumulate=accumulate)
        results.append((terms, fakes, [p.grad for p in model.discriminator.parameters()]))
    (terms_one, fakes_one, grads_one), (terms_split, fakes_split, grads_split) = results
    assert len(fakes_one) == 1 and [len(f()) for f in fakes_split] == [4] * 4  # G's update takes them one by one
    torch.testing.assert_close(torch.cat([f() for f in fakes_split]), fakes_one[0]())
    assert terms_one.keys() == terms_split.keys() == {"loss", "d_real", "d_fake", "gp"}
    for name in terms_one:
        torch.testing.assert_close(terms_split[name], terms_one[name], **GRADIENTS, msg=name)
    for a, b in zip(grads_one, grads_split, strict=True):
        torch.testing.assert_close(b, a, **GRADIENTS)


def test_with_micro_batches_g_is_run_again_for_its_update_instead_of_holding_every_graph():
    """Accumulating is for a batch whose activations do not fit at once: G's update makes each micro-batch's fakes
    again from its latents (one G pass more each) rather than keeping all of their graphs since D's update; with one
    part the fakes made for D are reused, as before."""
    config = GANConfig(data_shape=(2,), architecture="mlp", hidden_dims=(16, 16))
    real = torch.rand(BATCH, 2, generator=torch.Generator().manual_seed(1))
    for accumulate, passes in ((1, 1), (4, 8)):
        torch.manual_seed(0)
        model = family("gan").model(config)
        optimizers = family("gan").optimizers(model, 1e-2)
        calls = []
        model.generator.register_forward_hook(lambda module, args, out, calls=calls: calls.append(len(out)))
        family("gan").step(model, optimizers, real, accumulate=accumulate)
        assert calls == [BATCH // accumulate] * passes


def test_without_fixed_draws_micro_batches_draw_other_noise():
    """DDPM's micro-batches each draw timesteps then noise, which with the global RNG interleave differently from one
    pass: other numbers, another gradient. So the comparison above can fail, and FixedDraws is what aligns them."""
    family_name, settings, shape = CASES["ddpm"]
    recipe = family(family_name)
    grads = []
    for accumulate in (1, 2):
        torch.manual_seed(0)
        model = recipe.model(recipe.config(data_shape=shape, **settings))
        optimizers = recipe.optimizers(model, 1e-2)
        recipe.step(model, optimizers, torch.rand(BATCH, *shape), accumulate=accumulate)
        grads.append(next(model.parameters()).grad)
    assert not torch.allclose(grads[0], grads[1], **GRADIENTS)


def test_batchnorm_sees_the_micro_batch_so_its_runs_differ(monkeypatch):
    """What the README says is not equal: DCGAN's BatchNorm normalises each micro-batch by its own statistics."""
    dcgan = ("gan", {"architecture": "conv", "conv_channels": (4, 8), "latent_dim": 4}, (1, 8, 8))
    one, split = trained(dcgan, 1, monkeypatch), trained(dcgan, 2, monkeypatch)
    pairs = zip(one.parameters(), split.parameters(), strict=True)
    assert not all(torch.allclose(a, b, **PARAMETERS) for a, b in pairs)


@pytest.mark.parametrize("case", [
    ("progan", {"max_channels": 8, "latent_dim": 4, "fade_steps": 1, "stable_steps": 1}, (1, 8, 8)),
    ("superres", {"scale": 2, "g_channels": 4, "blocks": 1, "stage": "gan", "d_channels": 4, "d_layers": 1},
     (3, 8, 8)),
])
def test_the_gans_whose_layers_see_the_batch_take_one_step_per_batch(case, monkeypatch):
    """ProGAN (minibatch stddev always on) and the super-resolution GAN (relativistic average loss) cannot match
    one pass (README); each still makes one D and one G step per batch, and logs the same terms."""
    family_name, settings, shape = case
    recipe = family(family_name)
    logged = []
    for accumulate in (1, 4):
        torch.manual_seed(0)
        model = recipe.model(recipe.config(data_shape=shape, **settings))
        optimizers = recipe.optimizers(model, 1e-3)
        logged.append(recipe.step(model, optimizers, torch.rand(BATCH, *shape), accumulate=accumulate))
        assert {name: next(iter(o.state.values()))["step"].item() for name, o in optimizers.items()} == {
            "generator": 1, "discriminator": 1}
    assert logged[0].keys() == logged[1].keys()
    assert all(torch.isfinite(value).all() for value in logged[1].values())


def test_micro_batches_split_in_order_and_refuse_what_does_not_divide():
    x = torch.arange(12)
    assert [part.tolist() for part in micro_batches(x, 3)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert torch.equal(*micro_batches(x, 1), x)
    with pytest.raises(ValueError, match="a batch of 12 does not split into accumulate=5 equal micro-batches"):
        micro_batches(x, 5)


# --- the setting: refused in one line when it cannot work ----------------------------------------------------


@pytest.mark.parametrize(("settings", "message"), [
    ({"accumulate": 0}, "accumulate=0 is out of range: use 1..65536"),
    ({"accumulate": -2}, "accumulate=-2 is out of range: use 1..65536"),
    ({"accumulate": 10**9}, "accumulate=1000000000 is out of range: use 1..65536"),
    ({"accumulate": 2.0}, "accumulate=2.0 is not an integer"),  # a JSON request's number
    ({"accumulate": 3, "batch_size": 10}, "batch_size 10 does not split into accumulate=3 equal micro-batches: use a "
                                          "batch_size that is a multiple of 3"),
])
def test_an_accumulate_that_cannot_work_is_refused(settings, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        TrainConfig(**settings)


@pytest.mark.parametrize(("value", "message"), [
    ("nan", "accumulate='nan' is not an integer"),
    ("1e9", "accumulate='1e9' is not an integer"),
    ("99999999999999999999", "accumulate=99999999999999999999 is out of range: use 1..65536"),
    ("3", "batch_size 128 does not split into accumulate=3 equal micro-batches"),
])
def test_the_command_line_refuses_a_bad_accumulate_in_one_line(tmp_path, value, message):
    line = user_error(invoke("train", "ae", "--data", "digits", "--steps", 2, "--set", f"accumulate={value}",
                             "--run", tmp_path / "run"))
    assert message in line
    assert not (tmp_path / "run").exists()


def test_each_rank_splits_its_share_into_micro_batches_a_family_can_take():
    ae, gan = family("ae"), family("gan")
    with pytest.raises(ValueError, match=r"^batch_size 12 \(the global batch\) does not split over 8 micro-batches "
                                         r"\(2 processes x accumulate=4\): use a multiple of 8$"):
        _check_share(ae, None, TrainConfig(batch_size=12, accumulate=4), Ranks(0, 2))
    _check_share(ae, None, TrainConfig(batch_size=16, accumulate=4), Ranks(1, 2))
    packs = GANConfig(data_shape=(2,), pack=4)
    with pytest.raises(ValueError, match=r"^each of the 2 micro-batches \(accumulate=2\) takes 6 examples of a batch, "
                                         r"and batch_size 6 is not divisible by pack=4"):
        _check_share(gan, packs, TrainConfig(batch_size=12, accumulate=2), Ranks())
    with pytest.raises(ValueError, match=r"each of the 4 micro-batches \(2 processes x accumulate=2\) takes 4"):
        _check_share(gan, GANConfig(data_shape=(2,), pack=8), TrainConfig(batch_size=16, accumulate=2), Ranks(0, 2))
    _check_share(gan, packs, TrainConfig(batch_size=32, accumulate=2), Ranks(0, 2))


def test_a_micro_batch_that_breaks_packs_stops_the_command_in_one_line(tmp_path):
    line = user_error(invoke("train", "gan", "--data", "ring", "--steps", 2, "--set", "pack=4", "--set",
                             "batch_size=16", "--set", "accumulate=8", "--run", tmp_path / "run"))
    assert "each of the 8 micro-batches (accumulate=8) takes 2 examples of a batch" in line


# --- through the training loop -----------------------------------------------------------------------------


def test_a_run_with_accumulate_ends_where_one_without_ends(tmp_path, monkeypatch):
    """The loop hands each step its accumulate: a conv autoencoder (no random draws) trained 4 steps on digits in
    4 micro-batches ends with the weights and Adam moments of one pass per batch; the moments (squares of the
    gradients) would show a gradient 4 times too large."""
    real_step, seen = family("ae").step, []

    def step(model, optimizers, x, autocast, accumulate):
        seen.append((len(x), accumulate))
        return real_step(model, optimizers, x, autocast, accumulate)

    set_step(monkeypatch, "ae", step)
    runs = {}
    for accumulate in (1, 4):
        runs[accumulate] = make_run(tmp_path / f"accumulate-{accumulate}", "ae",
                                    {"architecture": "conv", "conv_channels": (4, 8)}, steps=4, batch_size=32,
                                    checkpoint_every=4, accumulate=accumulate)
        train(runs[accumulate], device="cpu")
    assert seen == [(32, 1)] * 4 + [(32, 4)] * 4  # the whole batch, and how many micro-batches to make of it
    one, split = (ckpt.load_checkpoint(ckpt.list_checkpoints(runs[k])[-1]).tensors for k in (1, 4))
    compared = [name for name in one if name.startswith(("model.", "optimizer."))]
    assert any(".exp_avg_sq" in name for name in compared)
    for name in compared:
        scale = one[name].abs().max().item() if one[name].is_floating_point() else 0
        torch.testing.assert_close(split[name], one[name], rtol=1e-4, atol=1e-6 * scale, msg=name)
    assert split["optimizer.model.0.step"].item() == 4  # one optimizer step per batch, not one per micro-batch


@pytest.mark.parametrize("case", ["vae", "gan"])
def test_a_resumed_run_with_accumulate_ends_bit_identical(tmp_path, case):
    family_name, settings = {"vae": ("vae", None),
                             "gan": ("gan", {"loss": "wgan-gp", "n_critic": 2, "ema_decay": 0.9})}[case]
    straight = make_run(tmp_path / "straight", family_name, settings, steps=8, checkpoint_every=4, log_every=4,
                        batch_size=16, accumulate=4)
    resumed = make_run(tmp_path / "resumed", family_name, settings, steps=8, checkpoint_every=4, log_every=4,
                       batch_size=16, accumulate=4)
    train(straight, device="cpu")
    assert train(resumed, device="cpu", stop_after=6) == ckpt.checkpoint_path(resumed, 4)
    train(resumed, device="cpu")
    for a, b in zip(ckpt.list_checkpoints(straight), ckpt.list_checkpoints(resumed), strict=True):
        assert_same_checkpoint(a, b)
    assert without_speed(metrics(straight)) == without_speed(metrics(resumed))


@pytest.mark.slow
def test_two_processes_each_accumulating_train_like_one_process(tmp_path):
    """torchrun: 2 ranks x 2 micro-batches of 8 against one process with the whole batch of 32; the autoencoder
    draws no random numbers, so they differ only in the order of float sums (four means of 8 against one of 32)."""
    args = ("train", "ae", "--data", "digits", "--steps", "6", "--set", "batch_size=32", *TINY)
    ok(torchrun(*args, "--set", "accumulate=2", "--run", str(tmp_path / "ddp")))
    ok(single(*args, "--run", str(tmp_path / "one")))
    ddp, one = latest(tmp_path / "ddp"), latest(tmp_path / "one")
    assert ddp.keys() == one.keys()
    for name in one:
        scale = one[name].abs().max().item() if one[name].is_floating_point() else 0
        torch.testing.assert_close(ddp[name], one[name], rtol=1e-4, atol=1e-6 * max(scale, 1), msg=name)
    meta = ckpt.read_meta(ckpt.list_checkpoints(tmp_path / "ddp")[-1])
    assert meta["run"]["train"]["accumulate"] == 2 and len(meta["rank_rng_states"]) == 2
