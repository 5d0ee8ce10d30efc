"""pythae 0.1.2's side of benchmarks/vae_throughput.py: one MNIST epoch of pythae's VAE on the pytorch/examples net.

Runs inside benchmarks/.pythae-venv (vae_throughput.py makes it and calls this file), never in genlab's
environment:

    benchmarks/.pythae-venv/bin/python benchmarks/vae_throughput_pythae.py --data X.npy --out DIR

X.npy holds the training images as float32 (N, 1, 28, 28) in [0, 1]. The last line printed is
`PYTHAE {json}` with three wall times: the TrainingPipeline call (pythae's documented entry point:
data checks, trainer set-up, the epoch, the best-model copy and the final save), the trainer.train()
call inside it, and the epoch loop alone (BaseTrainer.train_step).
"""

from __future__ import annotations

import argparse
import json
import time
from importlib.metadata import version

import numpy as np
import torch
import torch.nn.functional as F
from pythae.models import VAE, VAEConfig
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder
from pythae.pipelines import TrainingPipeline
from pythae.trainers import BaseTrainer, BaseTrainerConfig
from torch import nn


class Encoder(BaseEncoder):
    """pytorch/examples' VAE encoder: 784 -> 400 (ReLU) -> mu, logvar (20 each)."""

    def __init__(self):
        BaseEncoder.__init__(self)
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        h1 = F.relu(self.fc1(x.reshape(-1, 784)))
        return ModelOutput(embedding=self.fc21(h1), log_covariance=self.fc22(h1))


class Decoder(BaseDecoder):
    """pytorch/examples' VAE decoder: 20 -> 400 (ReLU) -> 784, sigmoid."""

    def __init__(self):
        BaseDecoder.__init__(self)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def forward(self, z: torch.Tensor) -> ModelOutput:
        h3 = F.relu(self.fc3(z))
        return ModelOutput(reconstruction=torch.sigmoid(self.fc4(h3)).reshape(-1, 1, 28, 28))


def timed(method, seconds: list[float]):
    """Wrap a BaseTrainer method so that each call's wall time is appended to `seconds`."""

    def wrapper(self, *args, **kwargs):
        start = time.perf_counter()
        result = method(self, *args, **kwargs)
        seconds.append(time.perf_counter() - start)
        return result

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="float32 .npy of shape (N, 1, 28, 28) in [0, 1]")
    parser.add_argument("--out", required=True, help="pythae's output_dir (checkpoints, final model)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    x = np.load(args.data)
    model = VAE(VAEConfig(input_dim=(1, 28, 28), latent_dim=20, reconstruction_loss="bce"),
                encoder=Encoder(), decoder=Decoder())
    config = BaseTrainerConfig(output_dir=args.out, num_epochs=1, learning_rate=1e-3,
                               per_device_train_batch_size=args.batch_size, no_cuda=True)
    train_seconds: list[float] = []
    epoch_seconds: list[float] = []
    BaseTrainer.train = timed(BaseTrainer.train, train_seconds)
    BaseTrainer.train_step = timed(BaseTrainer.train_step, epoch_seconds)
    pipeline = TrainingPipeline(model=model, training_config=config)
    start = time.perf_counter()
    pipeline(train_data=x)  # no eval data: pythae then keeps the best model on the training loss
    call_seconds = time.perf_counter() - start
    print("PYTHAE " + json.dumps({
        "pythae": version("pythae"), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "images": len(x), "batch_size": args.batch_size,
        "pipeline_s": call_seconds, "trainer_train_s": train_seconds[0], "epoch_loop_s": epoch_seconds[0],
    }), flush=True)


if __name__ == "__main__":
    main()
