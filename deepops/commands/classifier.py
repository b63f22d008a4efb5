"""``deepops train classifier`` and ``deepops predict classifier``.

    deepops train classifier --model lenet --data digits --epochs 30 --out runs/lenet
    torchrun --nproc-per-node 2 -m deepops train classifier ...      # DDP: gloo on the CPU, nccl on GPUs
    deepops train classifier --resume runs/lenet/last.pt --epochs 40 # continue a run
    deepops predict classifier --checkpoint runs/lenet/last.pt a.png b.tif

The options every ``deepops train`` command shares (``--epochs``, ``--seed``, ``--device``, ``--out``, ``--resume``,
``--time-limit``, ``--stop-after``, ``--threads``, ``--no-progress``) are ``deepops.train.loop.add_loop_arguments``.
"""

from __future__ import annotations


def register(parsers) -> None:
    from ..train.loop import add_loop_arguments

    t = parsers["train"].add_parser("classifier", help="train the LeNet-5 / AlexNet-style image classifier")
    add_loop_arguments(t, epochs=30, out="runs/classifier")
    t.add_argument("--model", choices=["lenet", "alexnet"], default="lenet")
    t.add_argument("--data", default="digits", help="'digits' (scikit-learn's, offline) or a folder with one sub-folder of images per class")
    t.add_argument("--batch-size", type=int, default=64, help="global batch (divided among torchrun processes)")
    t.add_argument("--lr", type=float, default=3e-3, help="peak Adam learning rate (cosine decay)")
    t.add_argument("--weight-decay", type=float, default=1e-4)
    t.add_argument("--image-size", type=int, default=None, help="resize images to this (default: 16 for digits, 32 for folders)")
    t.add_argument("--val-fraction", type=float, default=0.15)
    t.add_argument("--test-fraction", type=float, default=0.25)
    t.add_argument("--no-augment", action="store_true", help="no random rotation/scale/shift of training batches")
    t.add_argument("--impl", choices=["deepops", "torch"], default="deepops",
                   help="'torch' trains the identical network on torch.nn layers (deepops.nn.convert(model, to='torch'), the reference)")
    t.set_defaults(func=_train)

    p = parsers["predict"].add_parser("classifier", help="label images with a trained classifier")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--top", type=int, default=3, help="how many of the most probable classes to print")
    p.add_argument("images", nargs="+", help="PNG, TIFF, JPEG or BMP files")
    p.set_defaults(func=_predict)


def _train(args) -> int:
    from deepops.train.classifier import TrainConfig, train
    from deepops.train.loop import command_line, loop_arguments

    cfg = TrainConfig(
        model=args.model,
        data=args.data,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        impl=args.impl,
        augment=not args.no_augment,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        image_size=args.image_size,
        **loop_arguments(args),
    )
    train(cfg, command=command_line(args))
    return 0


def _predict(args) -> int:
    import deepops.data as D
    from deepops.train.classifier import load_model, predict

    model, cfg = load_model(args.checkpoint, args.device)
    classes = cfg["classes"]
    probs = predict(model, cfg, [D.read_image(f) for f in args.images], args.device)
    k = max(1, min(args.top, len(classes)))
    for f, p in zip(args.images, probs):
        v, i = p.topk(k)
        rest = "  ".join(f"{classes[j]}:{x:.3f}" for x, j in zip(v.tolist(), i.tolist()))
        print(f"{f}\t{classes[i[0]]}\t{v[0]:.4f}\t({rest})")
    return 0
