"""Quickstart: train a tiny spiking U-Net on scikit-learn's digits for a few steps, save it as a
native checkpoint, inspect it and sample from it.

    python examples/quickstart.py --train-steps 300 --out runs/quickstart

Everything runs on the CPU in about a minute; nothing is downloaded (the digits ship with
scikit-learn). The model is far too briefly trained to draw good digits: this shows the API.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from sdm_neuro import SpikingUNet, UNetConfig
from sdm_neuro.checkpoint import save_checkpoint
from sdm_neuro.cli import main as cli
from sdm_neuro.diffusion import LinearSchedule, diffusion_loss


def digits(img_size: int) -> torch.Tensor:
    """scikit-learn's 1,797 8x8 digits (values 0..16) as [N, 1, S, S] in [-1, 1]."""
    from sklearn.datasets import load_digits

    x = torch.tensor(load_digits().images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False)
    return x.clamp(0, 1) * 2 - 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--sample-steps", type=int, default=50)
    ap.add_argument("--num", type=int, default=16)
    ap.add_argument("--out", type=Path, default=Path("runs/quickstart"))
    args = ap.parse_args()

    torch.manual_seed(0)
    config = UNetConfig(ch=16, ch_mult=(1, 2), num_res_blocks=1, img_ch=1, snn_steps=4,
                        img_size=16)
    model = SpikingUNet(config)
    ema = copy.deepcopy(model)
    data = digits(config.img_size)
    schedule = LinearSchedule()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)

    t0 = time.perf_counter()
    bar = tqdm(range(args.train_steps), desc="train", unit="step")
    for _ in bar:
        idx = torch.randint(len(data), (args.batch,), generator=gen)
        loss = diffusion_loss(model, data[idx], schedule, gen)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), model.parameters()):
                pe.lerp_(p, 0.05)
            for be, b in zip(ema.buffers(), model.buffers()):
                be.copy_(b)
        bar.set_postfix(loss=f"{loss.item():.4f}")

    ckpt = args.out / "tiny.pt"
    save_checkpoint(ckpt, config, model.state_dict(), ema_model=ema.state_dict(),
                    meta={"dataset": "digits", "train_steps": args.train_steps,
                          "seconds": round(time.perf_counter() - t0, 1)})
    print(f"saved {ckpt}")
    for argv in (["info", str(ckpt)],
                 ["sample", str(ckpt), "--sampler", "ddim", "--steps", str(args.sample_steps),
                  "--num", str(args.num), "--out", str(args.out / "samples")]):
        print("$ sdm-neuro", " ".join(argv))
        if cli(argv) != 0:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
