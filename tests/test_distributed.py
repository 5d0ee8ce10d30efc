"""Data-parallel training under torchrun (gloo, CPU): two processes train like one, resume exactly, stop together,
and survive neither a killed rank nor a NaN on one rank by hanging. The launches are real torchrun runs of
`python -m genlab train` in subprocesses, so each costs a few seconds of process start-up."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from genlab import checkpoint as ckpt
from genlab.distributed import Ranks
from genlab.models import family
from genlab.models.gan import GANConfig
from genlab.train import TrainConfig, _check_share, _share, resolve_device

TINY = ("--set", "log_every=2", "--set", "sample_every=1000", "--set", "checkpoint_every=2")
LAUNCH_TIMEOUT = 180  # seconds: a launch that takes longer has hung, which is what several tests check against


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_command(*genlab_args: str, nproc: int = 2, launcher: tuple[str, ...] = (), script: str | None = None):
    """A torchrun launch of `genlab ARGS` (or of `script`): `--` keeps torchrun from reading genlab's --run as an
    abbreviation of its own --run-path."""
    rendezvous = launcher or ("--master_port", str(free_port()))
    target = [script, "--"] if script else ["-m", "genlab", "--"]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), *rendezvous, *target,
            *genlab_args]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def torchrun(*genlab_args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(torchrun_command(*genlab_args, **kwargs), capture_output=True, text=True, env=env(),
                          timeout=LAUNCH_TIMEOUT)


def single(*genlab_args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "genlab", *genlab_args], capture_output=True, text=True, env=env(),
                          timeout=LAUNCH_TIMEOUT)


def ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]


def latest(run: Path) -> dict[str, torch.Tensor]:
    return load_file(ckpt.list_checkpoints(run)[-1])


# --- pieces that need no second process --------------------------------------------------------------


def test_each_rank_takes_its_slice_of_every_batch_of_a_step():
    x = torch.arange(12).float()  # two global batches of 6 (a GAN with n_critic=2)
    shares = [_share(x, 2, Ranks(rank, 3)) for rank in range(3)]
    assert [s.tolist() for s in shares] == [[0, 1, 6, 7], [2, 3, 8, 9], [4, 5, 10, 11]]
    assert torch.equal(_share(x, 2, Ranks()), x)  # a lone process keeps everything


def test_a_global_batch_must_split_over_the_ranks():
    vae = family("vae")
    with pytest.raises(ValueError, match="batch_size 33 .* does not split over 2 processes: use a multiple of 2"):
        _check_share(vae, None, TrainConfig(batch_size=33), Ranks(0, 2))
    gan = family("gan")
    with pytest.raises(ValueError, match="each of the 2 processes takes 6 examples .* pack=4"):
        _check_share(gan, GANConfig(data_shape=(2,), pack=4), TrainConfig(batch_size=12), Ranks(1, 2))
    _check_share(gan, GANConfig(data_shape=(2,), pack=4), TrainConfig(batch_size=16), Ranks(1, 2))


def test_device_auto_picks_what_the_machine_has_and_absent_hardware_is_one_line():
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device("auto") == resolve_device(None) == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="^cuda is not available on this machine: use --device cpu$"):
            resolve_device("cuda")
    if not torch.backends.mps.is_available():
        with pytest.raises(ValueError, match="^mps is not available on this machine"):
            resolve_device("mps")
    with pytest.raises(ValueError, match="unknown device 'gpu': use auto, cpu, cuda, cuda:N or mps"):
        resolve_device("gpu")


# --- torchrun launches ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_processes_train_like_one_process_with_the_same_global_batch(tmp_path):
    # The autoencoder draws no random numbers, so the two runs differ only in the order of float sums: one mean
    # over 32 examples against the mean of two means over 16 (and convolution gradients summed in another order).
    args = ("train", "ae", "--data", "digits", "--steps", "6", "--set", "batch_size=32", *TINY)
    ok(torchrun(*args, "--run", str(tmp_path / "ddp")))
    ok(single(*args, "--run", str(tmp_path / "one")))
    ddp, one = latest(tmp_path / "ddp"), latest(tmp_path / "one")
    assert ddp.keys() == one.keys()
    for name in one:
        torch.testing.assert_close(ddp[name], one[name], rtol=1e-4, atol=1e-6, msg=name)
    first = load_file(ckpt.list_checkpoints(tmp_path / "ddp")[0])  # step 2: the run did move the weights
    assert not torch.equal(first["model.encoder.linear.weight"], ddp["model.encoder.linear.weight"])


@pytest.mark.slow
def test_a_resumed_two_process_run_ends_bit_identical_to_an_uninterrupted_one(tmp_path):
    # The VAE draws noise on every rank: rank 1's stream must come back from the checkpoint for this to hold.
    args = ("train", "vae", "--data", "digits", "--set", "batch_size=16", *TINY)
    ok(torchrun(*args, "--steps", "8", "--run", str(tmp_path / "straight")))
    ok(torchrun(*args, "--steps", "4", "--run", str(tmp_path / "resumed")))
    ok(torchrun("train", "--resume", str(tmp_path / "resumed"), "--steps", "8"))
    straight, resumed = latest(tmp_path / "straight"), latest(tmp_path / "resumed")
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name
    saved = ckpt.read_meta(ckpt.list_checkpoints(tmp_path / "resumed")[-1])["rank_rng_states"]
    assert len(saved) == 2 and saved[0] != saved[1]  # each rank has its own stream


@pytest.mark.slow
def test_killing_one_rank_stops_the_others_and_keeps_the_last_checkpoint(tmp_path):
    run = tmp_path / "run"
    launch = subprocess.Popen(torchrun_command("train", "ae", "--data", "digits", "--steps", "100000", "--set",
                                               "batch_size=16", *TINY, "--run", str(run)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    try:
        deadline = time.monotonic() + LAUNCH_TIMEOUT
        while len(ckpt.list_checkpoints(run)) < 2:
            assert launch.poll() is None and time.monotonic() < deadline, "the run never wrote two checkpoints"
            time.sleep(0.2)
        rank_1 = next(pid for pid in _children(launch.pid) if _environ(pid).get("RANK") == "1")
        os.kill(rank_1, signal.SIGKILL)
        out, err = launch.communicate(timeout=LAUNCH_TIMEOUT)
    finally:
        if launch.poll() is None:
            launch.kill()
    assert launch.returncode != 0
    assert "another training process stopped" in err and "resume with" in err, err[-3000:]
    checkpoint = ckpt.load_checkpoint(ckpt.list_checkpoints(run)[-1])  # whole and loadable
    assert checkpoint.step >= 4 and not list((run / "checkpoints").glob(".*.tmp"))


def test_a_rank_told_to_stop_outside_the_loop_finishes_saying_why():
    """torchrun SIGTERMs the surviving ranks when one dies; one already leaving (its collective failed) must live to
    print why, not die silently half-way (CI saw it); the loop then honours the request as a stop."""
    script = textwrap.dedent("""
        import os, signal, sys
        from genlab import distributed, train
        distributed.defer_termination()
        os.kill(os.getpid(), signal.SIGTERM)
        with train._stop_signals() as stop_requested:
            print("still here; stop requested:", stop_requested.is_set())
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env(), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "still here; stop requested: True" in result.stdout


def _children(pid: int) -> list[int]:
    return [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()]


def _environ(pid: int) -> dict[str, str]:
    pairs = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(pair.decode(errors="replace").partition("=")[::2] for pair in pairs if b"=" in pair)


NAN_ON_RANK_1 = """
import os, sys, dataclasses, torch
from genlab.models import FAMILIES
from genlab.cli import app

real = FAMILIES["ae"].step
calls = []

def step(model, optimizers, x, autocast, accumulate):
    terms = real(model, optimizers, x, autocast, accumulate)
    calls.append(1)
    if os.environ["RANK"] == "1" and len(calls) == 3:  # only rank 1, only its third step
        terms["loss"] = torch.tensor(float("nan"))
    return terms

FAMILIES["ae"] = dataclasses.replace(FAMILIES["ae"], step=step)
sys.argv = ["genlab", *sys.argv[1:]]
app()
"""


@pytest.mark.slow
def test_a_nan_on_one_rank_stops_every_rank_cleanly(tmp_path):
    script = tmp_path / "nan_on_rank_1.py"
    script.write_text(textwrap.dedent(NAN_ON_RANK_1))
    run = tmp_path / "run"
    result = torchrun("train", "ae", "--data", "digits", "--steps", "50", "--set", "batch_size=16", *TINY,
                      "--run", str(run), script=str(script))
    assert result.returncode != 0
    # both ranks stop at the same step with the same one-line reason; the checkpoint of step 2 stays
    assert result.stderr.count("loss = nan at step 3; the last good checkpoint is") == 2, result.stderr[-3000:]
    # no rank printed a traceback (torchrun's own ChildFailedError report has one, of the launcher's frames)
    assert not [line for line in result.stderr.splitlines() if line.strip().startswith("File") and "genlab" in line]
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["step-00000002.safetensors"]


@pytest.mark.slow
def test_two_nodes_on_loopback_train_a_gan(tmp_path):
    port = str(free_port())
    run = tmp_path / "run"
    nodes = [subprocess.Popen(torchrun_command(
        "train", "gan", "--data", "ring", "--steps", "6", "--set", "batch_size=32", *TINY, "--run", str(run),
        nproc=1, launcher=("--nnodes", "2", "--node_rank", str(node), "--master_addr", "127.0.0.1",
                           "--master_port", port)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env()) for node in (0, 1)]
    results = [node.communicate(timeout=LAUNCH_TIMEOUT) for node in nodes]
    for node, (_, err) in zip(nodes, results, strict=True):
        assert node.returncode == 0, err[-3000:]
    assert ckpt.load_checkpoint(ckpt.list_checkpoints(run)[-1]).step == 6
    assert len(ckpt.read_meta(ckpt.list_checkpoints(run)[-1])["rank_rng_states"]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("family_name", ["ddpm", "vqvae", "progan"])
def test_the_other_families_train_under_torchrun(tmp_path, family_name):
    data = {"ddpm": "ring", "vqvae": "digits", "progan": "digits"}[family_name]
    extra = ("--set", "fade_steps=2", "--set", "stable_steps=2") if family_name == "progan" else ()
    run = tmp_path / "run"
    ok(torchrun("train", family_name, "--data", data, "--steps", "4", "--set", "batch_size=16", *TINY, *extra,
                "--run", str(run)))
    assert ckpt.load_checkpoint(ckpt.list_checkpoints(run)[-1]).step == 4
