"""``deepops train gan`` and ``deepops sample gan``: train a DCGAN on deepops' ops, then draw samples from it.

    deepops train gan --data digits --epochs 20 --out runs/gan        # sample grids, last.pt, summary.json in runs/gan
    deepops train gan --resume runs/gan/last.pt --epochs 30 --out runs/gan
    deepops sample gan --checkpoint runs/gan/last.pt --n 64 --out grid.png [--score]

The GAN's training, data and defaults are in ``deepops.train.gan`` (a family of the shared loop,
``deepops.train.loop``, whose options every ``deepops train`` command has); the score in
``deepops.metrics.gan_score``.
"""

from __future__ import annotations

import argparse

from ..train.gan import GanConfig as _Defaults  # light: a dataclass (torch is imported by deepops already)


def _positive_int(s: str) -> int:
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {s}")
    return v


def _nonnegative_int(s: str) -> int:
    v = int(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive integer, got {s}")
    return v


def register(parsers) -> None:
    from ..train.loop import add_loop_arguments

    d = _Defaults()
    t = parsers["train"].add_parser(
        "gan",
        help="train a DCGAN (generator and discriminator on deepops layers)",
        description="Train a DCGAN. Every epoch writes samples_epochNNN.png (a fixed noise batch) and last.pt to --out; "
        "on the digits it also scores the generator (Fréchet distance in our digits classifier's feature space, "
        "confidence, classes covered).",
    )
    add_loop_arguments(t, epochs=d.epochs, out=d.out)
    t.add_argument("--data", default=d.data, help="digits (sklearn's, upsampled), cells (SIMCEP-like patches) or a folder of images")
    t.add_argument("--image-size", type=int, default=d.image_size, choices=[8, 16, 32, 64], help="image side (default %(default)s)")
    t.add_argument("--channels", type=_positive_int, default=None, help="image channels (default: from the data)")
    t.add_argument("--z-dim", type=_positive_int, default=d.z_dim, help="noise dimensions (default %(default)s)")
    t.add_argument("--g-width", type=_positive_int, default=d.g_width, help="generator channels at full size (default %(default)s)")
    t.add_argument("--d-width", type=_positive_int, default=d.d_width, help="discriminator's first channels (default %(default)s)")
    t.add_argument("--batch-size", type=_positive_int, default=d.batch_size, help="global batch, divided among torchrun processes (default %(default)s)")
    t.add_argument("--lr-g", type=float, default=d.lr_g, help="generator's Adam learning rate (default %(default)s)")
    t.add_argument("--lr-d", type=float, default=d.lr_d, help="discriminator's Adam learning rate (default %(default)s)")
    t.add_argument("--lr-decay", type=float, default=d.lr_decay, metavar="FRACTION", help="both learning rates fall linearly to 0 over this last fraction of the steps (default %(default)s)")
    t.add_argument("--beta1", type=float, default=d.beta1, help="Adam beta1 (default %(default)s)")
    t.add_argument("--beta2", type=float, default=d.beta2, help="Adam beta2 (default %(default)s)")
    t.add_argument("--real-label", type=float, default=d.real_label, help="target for real images, one-sided label smoothing (default %(default)s)")
    t.add_argument("--augment", type=_nonnegative_int, default=d.augment, metavar="PIXELS", help="random translation of every image the discriminator sees, real and fake (0: off; default %(default)s)")
    g = t.add_mutually_exclusive_group()
    g.add_argument("--score", dest="score", action="store_true", default=None, help="score every epoch (default on digits)")
    g.add_argument("--no-score", dest="score", action="store_false", help="no scoring")
    t.add_argument("--ema", type=float, default=d.ema, help="decay of the generator's weight average that samples (0: off; default %(default)s)")
    t.add_argument("--score-n", type=_positive_int, default=d.score_n, help="samples scored (default %(default)s)")
    t.add_argument("--limit-images", type=_positive_int, help="train on the first N images only (smoke tests)")
    t.set_defaults(func=_train)

    s = parsers["sample"].add_parser("gan", help="draw images from a trained DCGAN generator")
    s.add_argument("--checkpoint", required=True, help="a last.pt written by deepops train gan")
    s.add_argument("--n", type=_positive_int, default=64, help="number of images (default %(default)s)")
    s.add_argument("--out", default="grid.png", help="PNG grid to write (default %(default)s)")
    s.add_argument("--nrow", type=_positive_int, help="images per row (default: a square grid)")
    s.add_argument("--seed", type=int, default=0, help="noise seed (default %(default)s)")
    s.add_argument("--device", default=None)
    s.add_argument("--score", action="store_true", help="also score the samples (digits checkpoints: they carry the scorer)")
    s.set_defaults(func=_sample)


def _train(args) -> int:
    from ..train.gan import GanConfig, train
    from ..train.loop import command_line, loop_arguments

    loop = loop_arguments(args)
    resume, progress, limit_s = loop.pop("resume"), loop.pop("progress"), loop.pop("time_limit")
    cfg = GanConfig(
        data=args.data, image_size=args.image_size, channels=args.channels, z_dim=args.z_dim, g_width=args.g_width,
        d_width=args.d_width, batch_size=args.batch_size, lr_g=args.lr_g, lr_d=args.lr_d, lr_decay=args.lr_decay,
        beta1=args.beta1, beta2=args.beta2, real_label=args.real_label, ema=args.ema, score=args.score,
        score_n=args.score_n, time_limit=limit_s,
        limit_images=args.limit_images, augment=args.augment, **loop,
    )
    train(cfg, resume=resume, progress=progress, command=command_line(args))
    return 0


def _sample(args) -> int:
    import torch

    from ..metrics.gan_score import DigitScorer, GanScorer, generate
    from ..models.gan import Generator
    from ..train.common import load_checkpoint, resolve_device
    from ..train.gan import load_data, save_grid

    state = load_checkpoint(args.checkpoint)
    c = state["config"]
    device = resolve_device(args.device)
    G = Generator(c["image_size"], c["channels"], c["z_dim"], c["g_width"])
    if state.get("generator_ema"):  # the weight average, which the training samples and scores came from
        G.load_state_dict(state["generator_ema"])
    else:
        G.load_state_dict({k.removeprefix("generator."): v for k, v in state["model"].items() if k.startswith("generator.")})
    G.to(device)
    images = generate(G, args.n, seed=args.seed)
    print(f"wrote {save_grid(images, args.out, args.nrow)} ({args.n} images, {c['image_size']}x{c['image_size']})")
    if args.score:
        if not state.get("scorer"):
            raise SystemExit("--score: this checkpoint carries no scorer (only digits runs have one)")
        scorer = DigitScorer(c["channels"])
        scorer.load_state_dict(state["scorer"]["model"])
        real, _ = load_data(c["data"], c["image_size"], c["channels"])
        with torch.no_grad():
            s = GanScorer(scorer, real).score_images(images)
        print(
            f"frechet {s['frechet']:.2f} (in our digits classifier's feature space; depends on --n), "
            f"confidence {s['confidence']:.3f}, classes {s['classes']}: {s['class_counts']}"
        )
    return 0
