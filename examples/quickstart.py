"""Quickstart: train a tiny spiking U-Net on scikit-learn's digits, sample from it and measure the
samples' quality, with the Python API (each step has a CLI twin, printed as it runs).

    python examples/quickstart.py --train-steps 300 --out runs/quickstart

Runs on the CPU in a few minutes; nothing is downloaded (the digits ship with scikit-learn). A few
hundred steps give blurry digits at best: the shipped default model (``sdm-neuro sample`` with no
checkpoint) shows what a full run reaches, see ``sdm_neuro/assets/MODEL_CARD.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sdm_neuro import UNetConfig
from sdm_neuro.checkpoint import load_model
from sdm_neuro.diffusion import LinearSchedule, generate
from sdm_neuro.evaluation import evaluate_images, get_classifier
from sdm_neuro.evaluation.evaluate import summary_lines
from sdm_neuro.images import save_grid
from sdm_neuro.training import TrainConfig, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-steps", type=int, default=300)
    ap.add_argument("--sample-steps", type=int, default=50, help="DDIM steps")
    ap.add_argument("--num", type=int, default=64, help="samples to draw and score")
    ap.add_argument("--out", type=Path, default=Path("runs/quickstart"))
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    progress = not args.quiet

    config = UNetConfig(ch=16, ch_mult=(1, 2), num_res_blocks=1, img_ch=1, snn_steps=4,
                        img_size=16)
    recipe = TrainConfig(dataset="digits", steps=args.train_steps, batch_size=32, lr=1e-3,
                         warmup=50, ema_decay=0.99)
    print(f"$ sdm-neuro train --dataset digits --ch 16 --ch-mult 1,2 --num-res-blocks 1 "
          f"--steps {args.train_steps} --lr 1e-3 --warmup 50 --ema-decay 0.99 "
          f"--out {args.out}/tiny.pt")
    result = train(config, recipe, out=args.out / "tiny.pt", device="cpu", progress=progress)

    print(f"$ sdm-neuro sample {result.out} --sampler ddim --steps {args.sample_steps} "
          f"--num {args.num}")
    model, _ = load_model(result.out)  # the EMA weights
    x = generate(model, LinearSchedule(), args.num, (1, 16, 16), batch_size=args.num,
                 sampler="ddim", steps=args.sample_steps, seed=0, progress=progress)
    print(f"wrote {save_grid(x, args.out / 'samples.png')}")

    print(f"$ sdm-neuro evaluate {result.out} --sampler ddim --steps {args.sample_steps}")
    clf, name = get_classifier("digits", img_size=16)
    report = evaluate_images(x, dataset="digits", classifier=clf, classifier_name=name,
                             kid_subsets=20, progress=progress)
    print("\n".join(summary_lines(report)))


if __name__ == "__main__":
    main()
