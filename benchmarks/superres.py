"""Super-resolution on the held-out photos (`--data photos`' test split: 20 crops of 192x192 from 4 photos never
seen in training): PSNR/SSIM on Y of bicubic, the PSNR model and the GAN model started from it, each trained
through genlab's loop within a CPU budget; then the speed of an upscale, in ms per 256x256 input tile.

    python benchmarks/superres.py                               # x4, 900 CPU-s PSNR + 300 CPU-s GAN, 1 seed
    python benchmarks/superres.py --psnr-budget 300 --gan-budget 120 --seeds 0 1 2
    python benchmarks/superres.py --block rrdb --blocks 2               # ESRGAN's RRDB instead of residual blocks

Anchors (x4, Set5, far more data and compute): bicubic 28.42 dB, SRResNet 32.05, RRDB 32.73. Target here: the
PSNR model >= +1.5 dB over bicubic on the held-out photos.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from genlab import checkpoint as ckpt
from genlab.data import load_dataset
from genlab.data.photos import TEST_PHOTOS, read_photo
from genlab.evaluate import evaluate_run, y_scores
from genlab.models.superres import bicubic_upscale
from genlab.run import create_run, open_run
from genlab.train import TrainConfig, train
from genlab.upscale import TILE, png_bytes, upscale_file

MAX_STEPS = 1_000_000  # the CPU budget ends a run long before


def trained(run: Path, budget: float) -> dict:
    start = time.process_time()
    train(run, device="cpu", cpu_budget=budget)
    scores = evaluate_run(run)["results"]["super_resolution"]["scores"]
    return {**scores, "steps": ckpt.read_meta(ckpt.resolve_checkpoint(run))["step"],
            "cpu_s": time.process_time() - start}


def gain(model, hr: torch.Tensor) -> float:
    """The model's Y-PSNR over bicubic's on HR crops (B, C, H, W), eval's protocol; flat crops (the retina photo's
    black corners, where PSNR is infinite) left out."""
    hr = hr[hr.flatten(1).std(1) > 0.02]
    lr = model.degrade(hr)
    sr = torch.cat([model.upscale(lr[i:i + 16]) for i in range(0, len(lr), 16)])
    return y_scores(hr, sr, model.config.scale)["psnr"] - y_scores(hr, bicubic_upscale(lr, model.config.scale),
                                                                     model.config.scale)["psnr"]


def where_it_gains(run: Path, seed: int) -> str:
    """Why a gain is what it is: on each held-out photo, on crops of the training photos it trained on (its bank)
    and on fresh ones (another seed's bank). Seen = fresh: nothing memorised; train >> held out: too few photos."""
    model = open_run(run).model.eval()
    test = load_dataset("photos", "test")
    per_photo = ", ".join(f"{Path(name).stem} {gain(model, test.x[test.labels == k]):+.2f}"
                          for k, (_, name) in enumerate(TEST_PHOTOS))
    seen = gain(model, load_dataset("photos", "train", seed=seed).x[::20])
    fresh = gain(model, load_dataset("photos", "train", seed=seed + 1000).x[::20])
    return (f"PSNR model's gain over bicubic (dB): held-out photos {per_photo}; training photos, crops it trained on "
            f"{seen:+.2f}, fresh crops {fresh:+.2f}")


def ms_per_tile(model, size: int, threads: int, device: str = "cpu", dtype=None, repeats: int = 3) -> float:
    """Median wall ms of one upscale of a (1, 3, size, size) input."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = model.to(device)
        x = torch.rand(1, 3, size, size, device=device)
        context = torch.autocast(device, dtype=dtype) if dtype is not None else torch.no_grad()
        times = []
        with context:
            for _ in range(repeats + 1):  # the first is a warm-up
                if device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                model.upscale(x)
                if device == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
        return 1000 * statistics.median(times[1:])
    finally:
        torch.set_num_threads(before)


def ms_per_upscale(model, size: int, threads: int, folder: Path, repeats: int = 3) -> float:
    """Median wall ms of what `genlab upscale` does to a size x size PNG (a held-out photo's corner): decode,
    tiles of genlab.upscale.TILE with their overlap, encode and write the PNG."""
    photo = read_photo(*TEST_PHOTOS[1])[:, :size, :size]
    source, out = folder / "speed-in.png", folder / "speed-out.png"
    source.write_bytes(png_bytes((photo * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        times = []
        for _ in range(repeats + 1):  # the first is a warm-up
            start = time.perf_counter()
            upscale_file(model, source, out)
            times.append(time.perf_counter() - start)
        return 1000 * statistics.median(times[1:])
    finally:
        torch.set_num_threads(before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=4)
    # the budget: 20 CPU-minutes a seed, both stages
    parser.add_argument("--psnr-budget", type=float, default=900, help="CPU-seconds for the PSNR stage")
    parser.add_argument("--gan-budget", type=float, default=300, help="CPU-seconds for the GAN stage")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--g-channels", type=int, default=32)
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--block", choices=("residual", "rrdb"), default="residual",
                        help="rrdb: ESRGAN's, 15 convs a block where residual has 2")
    parser.add_argument("--d-channels", type=int, default=16, help="D's width: 64 (the default) costs 10x G's step")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-4, help="PSNR stage (cosine to 0); the GAN stage takes lr/5")
    parser.add_argument("--tile", type=int, default=256, help="input tile side for the speed figures")
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="genlab-superres-"))
    settings = {"scale": args.scale, "g_channels": args.g_channels, "blocks": args.blocks, "block": args.block}
    rows = []
    for seed in args.seeds:
        common = {"data": "photos", "steps": MAX_STEPS, "batch_size": args.batch_size, "seed": seed,
                  "lr_schedule": "cosine", "log_every": 10, "sample_every": MAX_STEPS, "checkpoint_every": MAX_STEPS}
        psnr_run = create_run(out / f"psnr-seed{seed}", "superres", TrainConfig(lr=args.lr, **common), settings)
        psnr = trained(psnr_run, args.psnr_budget)
        # ESRGAN's second stage: G (and its EMA copy) from the PSNR run's, D fresh (superres.start_from)
        gan_run = create_run(out / f"gan-seed{seed}", "superres", TrainConfig(lr=args.lr / 5, **common),
                             {"stage": "gan", "d_channels": args.d_channels}, init_from=psnr_run)
        gan = trained(gan_run, args.gan_budget)
        rows.append((seed, psnr, gan))
        print(f"seed {seed}: bicubic {psnr['bicubic_psnr_y']:.2f} dB / {psnr['bicubic_ssim_y']:.4f}, "
              f"PSNR model {psnr['psnr_y']:.2f} / {psnr['ssim_y']:.4f} ({psnr['steps']} steps, {psnr['cpu_s']:.0f} "
              f"CPU-s), GAN {gan['psnr_y']:.2f} / {gan['ssim_y']:.4f} ({gan['steps']} steps, {gan['cpu_s']:.0f} "
              f"CPU-s); sharpness bicubic {psnr['bicubic_sharpness']:.4f}, PSNR {psnr['sharpness']:.4f}, "
              f"GAN {gan['sharpness']:.4f}, HR {psnr['hr_sharpness']:.4f}", flush=True)
        print(where_it_gains(psnr_run, seed), flush=True)

    def mean(stage: int, key: str) -> float:
        return statistics.mean(row[stage][key] for row in rows)

    print(f"\nx{args.scale}, held-out photos (20 crops of 192x192), Y channel, {args.scale}-px border, "
          f"{len(rows)} seed(s); G {args.g_channels} channels x {args.blocks} {args.block} blocks; budgets "
          f"{args.psnr_budget:g} + {args.gan_budget:g} CPU-s")
    print("| model | PSNR (dB) | SSIM | sharpness (HR {:.4f}) |".format(mean(1, "hr_sharpness")))
    print("|---|---|---|---|")
    print(f"| bicubic | {mean(1, 'bicubic_psnr_y'):.2f} | {mean(1, 'bicubic_ssim_y'):.4f} | "
          f"{mean(1, 'bicubic_sharpness'):.4f} |")
    print(f"| PSNR model (L1) | {mean(1, 'psnr_y'):.2f} | {mean(1, 'ssim_y'):.4f} | {mean(1, 'sharpness'):.4f} |")
    print(f"| GAN model | {mean(2, 'psnr_y'):.2f} | {mean(2, 'ssim_y'):.4f} | {mean(2, 'sharpness'):.4f} |")

    model = open_run(out / f"psnr-seed{args.seeds[0]}").model
    one, every = ms_per_tile(model, args.tile, 1), ms_per_tile(model, args.tile, torch.get_num_threads())
    speed = (f"ms_per_tile_1_thread={one:.0f} ms_per_tile_{torch.get_num_threads()}_threads={every:.0f}")
    print(f"\nupscale of a {args.tile}x{args.tile} input to {args.tile * args.scale}x{args.tile * args.scale}: "
          f"{one:.0f} ms on 1 CPU thread, {every:.0f} ms on {torch.get_num_threads()}")
    side = args.tile * args.scale
    one_file = ms_per_upscale(model, args.tile, 1, out)
    every_file = ms_per_upscale(model, args.tile, torch.get_num_threads(), out)
    speed += f" upscale_ms_1_thread={one_file:.0f} upscale_ms_{torch.get_num_threads()}_threads={every_file:.0f}"
    print(f"`genlab upscale` of a {args.tile}x{args.tile} PNG to {side}x{side} (decode, {TILE}px tiles with overlap, "
          f"encode): {one_file:.0f} ms on 1 CPU thread, {every_file:.0f} ms on {torch.get_num_threads()}")
    if torch.cuda.is_available():
        gpu = ms_per_tile(model, args.tile, 1, "cuda", torch.bfloat16, repeats=20)
        speed += f" ms_per_tile_gpu_bf16={gpu:.2f}"
        print(f"{gpu:.2f} ms on {torch.cuda.get_device_name()} in bf16")
    gain = mean(1, "psnr_y") - mean(1, "bicubic_psnr_y")
    print(f"RESULT bicubic_psnr={mean(1, 'bicubic_psnr_y'):.2f} psnr_model_psnr={mean(1, 'psnr_y'):.2f} "
          f"gan_model_psnr={mean(2, 'psnr_y'):.2f} psnr_gain_db={gain:.2f} "
          f"bicubic_ssim={mean(1, 'bicubic_ssim_y'):.4f} "
          f"psnr_model_ssim={mean(1, 'ssim_y'):.4f} gan_model_ssim={mean(2, 'ssim_y'):.4f} {speed} "
          f"target_gain_1.5dB={'met' if gain >= 1.5 else 'missed'}")


if __name__ == "__main__":
    main()
