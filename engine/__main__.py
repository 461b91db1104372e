"""Command line: ``python -m engine {evaluate,embed,automatic,export-decoder,train,cache-features}``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _model(args):
    from .build import build_model

    return build_model(args.model, checkpoint=args.checkpoint, allow_untrained=getattr(args, "allow_untrained", False))


def cmd_evaluate(args) -> int:
    from .evaluate import RandomWalkerSegmenter, SamSegmenter, evaluate, format_table, load_dataset, plot

    items = load_dataset(args.data)
    if args.limit:
        items = items[: args.limit]
    methods = []
    if not args.baseline_only:
        methods.append(SamSegmenter(_model(args), multimask_always=args.multimask_always))
    if args.baseline or args.baseline_only:
        methods.append(RandomWalkerSegmenter())
    results = evaluate(methods, items, max_clicks=args.max_clicks, progress=not args.quiet)
    data_name = Path(args.data).resolve().name
    out = Path(args.out) if args.out else Path("var/eval") / f"{methods[0].name}-{data_name}"
    out.mkdir(parents=True, exist_ok=True)
    report = {"dataset": str(args.data), "n_objects": len(items), "max_clicks": args.max_clicks,
              "protocol": "deepest point of the larger error region (border = edge), "
                          "GrabCut 128 band ignored", "results": results}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    png = plot(results, out / "miou_vs_clicks.png", f"{data_name} ({len(items)} objects)")
    print(format_table(results))
    print(f"report: {out / 'report.json'}" + (f"  plot: {png}" if png else "  (matplotlib missing: no plot)"))
    return 0


def cmd_embed(args) -> int:
    import time

    import numpy as np

    from .predictor import embed, load_image

    model = _model(args)
    image = load_image(args.image)
    t0 = time.perf_counter()
    emb = embed(model, image, backend=args.backend)
    dt = time.perf_counter() - t0
    if args.out:
        np.save(args.out, emb.numpy())
    print(json.dumps({"model_id": model.model_id, "image": str(args.image), "shape": list(emb.shape),
                      "seconds": round(dt, 3), "mean": float(emb.mean()), "std": float(emb.std()),
                      "out": args.out}))
    return 0


def cmd_automatic(args) -> int:
    import time

    import numpy as np

    from .automatic import AutomaticMaskParams, generate_masks
    from .predictor import embed, load_image

    try:
        params = AutomaticMaskParams.from_dict(json.loads(args.params))
    except (ValueError, json.JSONDecodeError) as exc:
        print(f"--params: {exc}", file=sys.stderr)
        return 2
    model = _model(args)
    image = load_image(args.image)
    h, w = image.shape[:2]
    t0 = time.perf_counter()
    emb = np.load(args.embedding) if args.embedding else embed(model, image).numpy()
    t1 = time.perf_counter()

    def encode_crop(box):  # crop layers: one encoder pass per crop
        x0, y0, x1, y1 = box
        return embed(model, np.ascontiguousarray(image[y0:y1, x0:x1])).numpy()

    records = generate_masks(model, emb, (h, w), params, encode_fn=encode_crop)
    t2 = time.perf_counter()
    if args.out:
        Path(args.out).write_text(json.dumps(records))
    print(json.dumps({"model_id": model.model_id, "image": str(args.image), "size": [h, w], "masks": len(records),
                      "embed_seconds": round(t1 - t0, 3), "generate_seconds": round(t2 - t1, 3),
                      "params": params.to_dict(), "out": args.out}))
    return 0


def cmd_export_decoder(args) -> int:
    from .onnx_export import export_decoder

    path = export_decoder(_model(args), args.out_path, quantize=args.quantize)
    print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m engine")
    sub = p.add_subparsers(dest="cmd", required=True)

    def model_args(sp, positional: bool = False):
        if positional:
            sp.add_argument("model", help="registered model: default, vit_b, vit_l, vit_h")
        else:
            sp.add_argument("--model", default="default", help="registered model (default: default)")
        sp.add_argument("--checkpoint", help="weights file (required for the official ViTs)")
        sp.add_argument("--allow-untrained", action="store_true", help=argparse.SUPPRESS)

    e = sub.add_parser("evaluate", help="NoC@85/90 and mIoU by click with the standard click protocol")
    model_args(e)
    e.add_argument("data", help="GrabCut-style, COCO_MVal-style or plain image+mask folder")
    e.add_argument("--max-clicks", type=int, default=20)
    e.add_argument("--limit", type=int, default=0, help="only the first N objects")
    e.add_argument("--out", help="report folder (default var/eval/<model id>-<dataset>)")
    g = e.add_mutually_exclusive_group()
    g.add_argument("--no-baseline", dest="baseline", action="store_false", help="skip the random-walker baseline")
    g.add_argument("--baseline-only", action="store_true")
    e.add_argument("--quiet", action="store_true")
    e.add_argument("--multimask-always", action="store_true",
                   help="diagnostic: pick the best-predicted multimask candidate at every click "
                        "instead of SAM's single-mask output for more than one click")
    e.set_defaults(func=cmd_evaluate, baseline=True)

    m = sub.add_parser("embed", help="embed one image (1x256x64x64)")
    model_args(m)
    m.add_argument("image")
    m.add_argument("--out", help="write the embedding as .npy")
    m.add_argument("--backend", choices=["auto", "torch", "onnx"], default="auto")
    m.set_defaults(func=cmd_embed)

    a = sub.add_parser("automatic", help="SAM's automatic masks of one image (records as JSON)")
    model_args(a)
    a.add_argument("image")
    a.add_argument("--params", default="{}", help='AutomaticMaskParams as JSON, e.g. \'{"points_per_side": 16}\'')
    a.add_argument("--embedding", help="a stored 1x256x64x64 .npy embedding instead of embedding the image")
    a.add_argument("--out", help="write the records (COCO RLE, bbox XYWH, ...) as JSON")
    a.set_defaults(func=cmd_automatic)

    x = sub.add_parser("export-decoder", help="export the prompt encoder + mask decoder to ONNX")
    model_args(x, positional=True)
    x.add_argument("out_path")
    x.add_argument("--quantize", action="store_true")
    x.set_defaults(func=cmd_export_decoder)

    sub.add_parser("train", help="train the default model (see engine.training.train --help)", add_help=False)
    sub.add_parser("cache-features", help="cache frozen-backbone features (engine.training.features)", add_help=False)

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        from .training.train import main as train_main

        train_main(argv[1:])
        return 0
    if argv and argv[0] == "cache-features":
        from .training.features import main as feat_main

        feat_main(argv[1:])
        return 0
    args = p.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
