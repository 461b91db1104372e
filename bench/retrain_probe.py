"""Does a decoder fine-tune on a project's accepted masks improve held-out NoC? (issue 9)

Usage: ``PYTHONPATH=. python bench/retrain_probe.py LR[,LR...] STEPS``

The project: the 40 COCO_MVal photos the shipped default model never trained on (every 20th
by name: its validation slice), one ground-truth mask each; held out: the 4 the retrain job
holds out by content hash (``annotator.core.retrain.heldout_key``); the other 36 are trained
on with ``engine.training.finetune.finetune_decoder`` (the retrain job's code, batch 4, 1
thread) from the shipped weights; NoC@85/90 and mIoU@1/3/5 on the held-out 4 before and
after, per learning rate. Prints the numbers (the choice of ``ANNOTATOR_RETRAIN_LR``).
"""
import sys
import time
import engine
from engine.evaluate import load_dataset
from engine.training.finetune import EmbeddedObject, FinetuneConfig, evaluate_objects, finetune_decoder

lrs = [float(x) for x in sys.argv[1].split(",")]
steps = int(sys.argv[2])
m = engine.build_model("default")
items = sorted(load_dataset("../shared/data/coco_mval"), key=lambda it: it.name)[::20]
objs = []
for it in items:
    img = engine.load_image(it.image_path)
    emb = engine.embed(m, img).numpy()
    objs.append(EmbeddedObject(it.name, emb, it.gt.shape, it.gt))
HELD = {"bear00_000000243075", "hot dog00_000000322574", "sheep00_000000559956", "snowboard00_000000387916"}
train = [o for o in objs if o.name not in HELD]; held = [o for o in objs if o.name in HELD]
print(len(train), len(held), flush=True)
t0 = time.time()
base = evaluate_objects(m, held)
print("base held-out", {k: base[k] for k in ("NoC@85", "NoC@90")}, "mIoU@1/3/5", base["mIoU@1"], base["mIoU@3"], base["mIoU@5"], f"{time.time()-t0:.0f}s", flush=True)
for lr in lrs:
    t0 = time.time()
    tuned, stats = finetune_decoder(m, train, FinetuneConfig(steps=steps, batch=4, lr=lr, threads=1))
    r = evaluate_objects(tuned, held)
    print(f"lr {lr} steps {steps}: held-out", {k: r[k] for k in ("NoC@85", "NoC@90")}, "mIoU@1/3/5", r["mIoU@1"], r["mIoU@3"], r["mIoU@5"], "loss", stats.get("first_loss"), "->", stats.get("last_loss"), f"{time.time()-t0:.0f}s", flush=True)
