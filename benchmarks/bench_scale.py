"""Training from a MovieNet-sized feature store: samples/s and anonymous memory of one epoch, next to a
store 10x smaller with the same per-video shapes.

MovieNet has about 26,000 trailers. At the trailer caps (160 frame, 144 audio and up to 80 face tokens per
video, float16) their features take about 12 GB: more than a laptop's RAM, so training must stream them
from the memory-mapped store. This script generates such a store once (with vemo's own store writer),
then trains one epoch of each fusion head on it with the real command,

    python -m vemo.train data=store data.store=... fusion=<head> trainer.max_epochs=1 \\
        data.max_len={frames:160,audio:144,faces:80} data.batch_size=32 logger=csv test=false ...

in a child process, and on a store 10x smaller. A watcher thread samples /proc/<pid>/status of the
training process and its DataLoader workers every 0.2 s. Anonymous memory (RssAnon: RSS minus file-backed
and shared pages) is what the store must not grow; the store's own pages are file-backed (RssFile) and
belong to the page cache, which the kernel reclaims under pressure.

    python benchmarks/bench_scale.py                                  # 26,000 vs 2,600 videos (~12 GB)
    python benchmarks/bench_scale.py --videos 2600                    # 2,600 vs 260: same shapes, 10x less
    python benchmarks/bench_scale.py --videos 26000 --device cuda --root /tmp/scale
    python benchmarks/bench_scale.py --quick                          # smoke run: 640 vs 64 videos

Beside it: ``_scale_store.py`` (the generated stores), ``_scale_training.py`` (one training run and the
callback that times its steps), ``_scale_memory.py`` (the memory of a process tree).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from _common import emit, log, machine_cores, mib, print_header, print_table, proc_status, run_child
from _scale_memory import PSS_EVERY, SAMPLE_S
from _scale_store import CAPS, DIMS, FACES_AT_CAP, VAL_VIDEOS, VECTOR, ensure_store
from _scale_training import run_training

MOVIENET_VIDEOS = 26000
EPOCH_GROWTH_LIMIT = 25  # MiB per 1,000 steps above which anonymous memory counts as growing during an epoch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=int, default=None, help="videos in the large store (default 26000; 400 with --quick)")
    p.add_argument("--small", type=int, default=None, help="videos in the small store (default: --videos / 10)")
    p.add_argument("--root", type=Path, default=Path("~/.cache/vemo/bench-scale"),
                   help="folder the stores are generated into once and reused from (default ~/.cache/vemo/bench-scale)")
    p.add_argument("--heads", nargs="+", default=["crossattn", "joint"],
                   help="fusion heads to train; unregistered ones are skipped with a note (default: crossattn joint)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="cpu (trainer=cpu, float32) or cuda (trainer=gpu, bf16-mixed, pinned memory); default cpu")
    p.add_argument("--num-workers", type=int, default=None,
                   help="DataLoader workers (default: half the usable cores, at least 1, at most 8)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads of the training process, via OMP_NUM_THREADS (default: the usable cores)")
    p.add_argument("--batch-size", type=int, default=32, help="(default 32)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop each epoch after this many steps (timing only: memory then covers part of the store)")
    p.add_argument("--warmup-steps", type=int, default=5, help="first steps left out of the median rate (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated stores and of training (default 0)")
    p.add_argument("--child-env", nargs="+", default=[], metavar="KEY=VALUE",
                   help="environment variables for the training processes, e.g. MALLOC_MMAP_THRESHOLD_=131072")
    p.add_argument("--train-args", nargs="+", default=[], metavar="KEY=VALUE",
                   help="more overrides for python -m vemo.train, e.g. trainer.gradient_clip_val=null")
    p.add_argument("--keep-runs", action="store_true", help="keep the run folders (under --root/runs)")
    p.add_argument("--quick", action="store_true", help="smoke run: 640 vs 64 videos")
    p.add_argument("--metadata", type=Path, help=argparse.SUPPRESS)  # internal: index + labels memory of one store
    args = p.parse_args(argv)
    args.videos = args.videos or (640 if args.quick else 26000)
    args.small = args.small or max(1, args.videos // 10)
    args.root = args.root.expanduser()
    cores = machine_cores()
    args.num_workers = args.num_workers if args.num_workers is not None else max(1, min(8, cores // 2))
    args.threads = args.threads or cores
    if any("=" not in kv for kv in args.child_env):
        p.error(f"--child-env takes KEY=VALUE pairs, got {args.child_env}")
    if min(args.videos, args.small) < VAL_VIDEOS + args.batch_size:
        p.error(f"a store needs at least {VAL_VIDEOS + args.batch_size} videos ({VAL_VIDEOS} validation + one batch)")
    return args


# ---------------------------------------------------------------- child: the index and labels alone
def measure_metadata(folder: Path) -> dict[str, Any]:
    """Anonymous memory that opening the store and reading its labels adds: what grows with the
    number of videos no matter how the features are read (one index record and label per video)."""
    import gc

    import numpy as np  # noqa: F401  (imported before the baseline, as the store needs it)

    from vemo.data.labels import read_labels
    from vemo.store import FeatureStore

    gc.collect()
    before = proc_status().get("RssAnon", 0)
    store = FeatureStore(folder / "store")
    labels = read_labels(folder / "labels.csv")
    gc.collect()
    after = proc_status().get("RssAnon", 0)
    return {"videos": len(store), "labels": len(labels.targets), "anon": after - before}


# ---------------------------------------------------------------- parent
def main(argv: list[str] | None = None) -> int | None:
    started = time.perf_counter()
    args = parse_args(argv)
    if args.metadata:
        emit(measure_metadata(args.metadata))
        return None
    import vemo.fusion

    registered = vemo.fusion.names()
    heads = [h for h in args.heads if h in registered]
    skipped = [h for h in args.heads if h not in registered]
    print_header("vemo training from a MovieNet-sized memory-mapped store: samples/s and anonymous memory",
                 args.threads)
    for h in skipped:
        print(f"SKIPPED   : fusion head {h!r} is not registered (registered: {', '.join(registered)})")
    if not heads:
        sys.exit(f"none of the heads {args.heads} is registered; registered: {', '.join(registered)}")

    stores = []
    for videos in (args.small, args.videos):
        t = time.perf_counter()
        folder, info, reused = ensure_store(args.root, videos, args.seed)
        how = (f"reused (generated earlier in {info['generation_s']:.0f}s)" if reused
               else f"generated in {time.perf_counter() - t:.0f}s")
        print(f"store {videos:>6,} videos: {folder}  {info['bytes'] / 1e9:.2f} GB ({mib(info['bytes'])} MiB) on disk, "
              f"{how}; {info['train']:,} train / {info['val']:,} val videos, {info['labels_per_video']:.2f} "
              f"genres per video")
        stores.append((folder, info))
    present = stores[-1][1]["present"]
    print("per video: " + ", ".join(
        f"{m} {1 if m in VECTOR else CAPS[m] if m != 'faces' else f'1-{CAPS[m]}'}x{d}"
        f" ({present[m] / stores[-1][1]['videos']:.0%})" for m, d in DIMS.items())
        + f" float16 ({FACES_AT_CAP:.0%} of the videos with faces fill the cap); 21 genres, multi-label")
    print(f"training: python -m vemo.train, one epoch, fusion heads {', '.join(heads)}, batch {args.batch_size}, "
          f"data.max_len {CAPS}, {args.num_workers} DataLoader worker(s), {args.threads} torch thread(s), "
          f"device {args.device}" + (f", at most {args.max_steps} steps" if args.max_steps else "")
          + (f", environment {' '.join(args.child_env)}" if args.child_env else "")
          + (f", overrides {' '.join(args.train_args)}" if args.train_args else ""))
    print(f"memory: /proc/<pid>/status of the training process and its workers every {SAMPLE_S:g}s")
    print(flush=True)

    metadata = {folder.name: run_child(Path(__file__), ["--metadata", str(folder)]) for folder, _ in stores}
    results, failed = [], []
    for head in heads:
        try:
            runs = [run_training(args, folder, head, label) | {"videos": info["videos"], "bytes": info["bytes"]}
                    for (folder, info), label in zip(stores, ("small", "large"))]
        except RuntimeError as e:  # one broken head does not cost the others' figures
            log(str(e))
            failed.append(head)
            continue
        results.extend(runs)
    if results:
        report(args, stores, results, metadata)
    for head in failed:
        print(f"FAILED    : fusion head {head!r}: its training command failed (the error is on stderr)")
    print(f"total time: {time.perf_counter() - started:.0f}s, generation included")
    return 1 if failed else None


def report(args, stores, results, metadata) -> None:
    print()
    rows = []
    for r in results:
        rows.append([f"{r['videos']:,}", f"{r['bytes'] / 1e9:.2f}", r["head"], f"{r['steps']:,}",
                     f"{r['median_rate']:,.1f}" if r["median_rate"] else "n/a", f"{r['mean_rate']:,.1f}",
                     f"{r['train_s']:.0f}", f"{r['setup_s']:.0f}", mib(r["peak_main_anon"]),
                     mib(r["peak_tree_anon"]), mib(r["peak_tree_pss_anon"]), mib(r["peak_main_rss"]),
                     mib(r["main_hwm"]), mib(r["peak_main_file"])])
    print("One training epoch from the memory-mapped store (MiB are sampled peaks)")
    print_table(["videos", "GB", "head", "steps", "median samples/s", "epoch samples/s", "epoch s", "setup s",
                 "anon main", "anon tree", "PSS anon tree", "RSS main", "VmHWM main", "file main"], rows)

    verdicts = []
    rows = []
    for head in dict.fromkeys(r["head"] for r in results):
        small, large = (next(r for r in results if r["head"] == head and r["label"] == k) for k in ("small", "large"))
        for key, what in (("peak_main_anon", "main"), ("peak_tree_anon", "tree"),
                          ("peak_tree_pss_anon", "tree PSS")):
            a, b = small[key], large[key]
            if a is None or b is None:
                continue
            rows.append([head, what, mib(a), mib(b), f"{b / a:.3f}", f"{(b - a) / 2**20:+,.0f}"])
        for key, what in (("peak_main_anon", "the training process"), ("peak_tree_anon", "process and workers")):
            a, b = small[key], large[key]
            grows = b - a > 0.10 * a
            verdicts.append(f"{head}: peak anonymous memory of {what} {mib(a)} -> {mib(b)} MiB "
                            f"({(b - a) / 2**20:+,.0f} MiB, x{b / a:.3f}) for {large['videos'] / small['videos']:.0f}x "
                            "the videos: " + ("GROWS with the store (more than 10%)" if grows
                                              else "does not grow with the store (within 10%)"))
        if large.get("epoch_growth"):
            # a store pair small enough for a slow machine can hide a per-step growth that a full epoch shows
            grew, steps = large["epoch_growth"]
            per_1000 = grew / 2**20 / steps * 1000
            movienet_steps = -(-(MOVIENET_VIDEOS - VAL_VIDEOS) // args.batch_size)
            if per_1000 <= EPOCH_GROWTH_LIMIT:
                verdict = "flat"
            elif steps < 200 and grew < 32 * 2**20:
                verdict = (f"inconclusive: {grew / 2**20:+,.0f} MiB over {steps:,.0f} steps is within the step-to-step "
                           "noise; a longer epoch (--videos, --max-steps) settles it")
            else:
                verdict = (f"GROWS with the steps of an epoch: ~{per_1000 * movienet_steps / 1000:+,.0f} MiB by the "
                           f"end of one epoch of {MOVIENET_VIDEOS:,} videos ({movienet_steps:,} steps)")
            verdicts.append(f"{head}: anonymous memory of the training process during the large store's epoch: "
                            f"{per_1000:+,.0f} MiB per 1,000 steps, {verdict}")
    print(f"Anonymous memory, large store ({stores[1][1]['videos']:,} videos) over small ({stores[0][1]['videos']:,})")
    print_table(["head", "process", "small MiB", "large MiB", "large/small", "delta MiB"], rows)
    for v in verdicts:
        print("VERDICT   : " + v)
    meta = [metadata[f.name] for f, _ in stores]
    print(f"index + labels alone (FeatureStore(...) + read_labels, fresh process): {mib(meta[0]['anon'])} MiB for "
          f"{meta[0]['videos']:,} videos, {mib(meta[1]['anon'])} MiB for {meta[1]['videos']:,} "
          f"({(meta[1]['anon'] - meta[0]['anon']) / max(1, meta[1]['videos'] - meta[0]['videos']):,.0f} bytes "
          "per extra video): the part that grows with the number of videos whatever reads the features")
    print()
    for r in results:
        print(f"{r['head']:>10} {r['videos']:>6,} videos: anon main at train start {mib(r['main_anon_train_start'])}, "
              f"peak during setup {mib(r['peak_main_anon_setup'])}, peak during the epoch's steps "
              f"{mib(r['peak_main_anon_train'])}, at the last step {mib(r['main_anon_train_end'])} MiB; "
              f"{r['workers_seen']} worker(s) seen, {r['samples_taken']} samples, {r['threads']} torch threads, "
              f"run {r['wall_s']:.0f}s")
        if r.get("epoch_growth"):
            grew, steps = r["epoch_growth"]
            print(f"{'':>10} {'':>6}         anon main between steps (lowest over a tenth of the epoch) grew "
                  f"{grew / 2**20:+,.0f} MiB over {steps:,.0f} steps ({grew / 2**20 / steps * 1000:+,.0f} MiB per 1,000 steps)")
    print()
    print("median samples/s: batch size over each step's wall time (from the end of one training step to the end of\n"
          f"the next), median over the epoch's steps after the first {args.warmup_steps}. epoch samples/s: samples over the\n"
          "time from the epoch's start (workers starting, first batch) to its last step; validation is not in either.\n"
          "setup s: from starting the command to the first step: imports, opening the store, the NaN scan and the\n"
          "normalization statistics (both read the whole store once), model build.\n"
          "anon: RssAnon, private memory (RSS minus file-backed and shared pages), sampled every 0.2 s; main is the\n"
          "training process, tree adds its DataLoader workers (pages a forked worker still shares copy-on-write with\n"
          f"its parent count in both; PSS anon tree counts them once, sampled every {PSS_EVERY * SAMPLE_S:g} s). RSS main: VmRSS, which\n"
          "includes the store's file pages; VmHWM main: the kernel's peak of it. file main: RssFile, mostly the\n"
          "store's pages in the page cache, which the kernel can drop and re-read; it grows with the store by design.")
    if args.max_steps:
        print(f"NOTE      : --max-steps {args.max_steps}: each epoch stopped early, so the runs touched only part of\n"
              "            the store's pages during training (setup still read all of it).")


if __name__ == "__main__":
    sys.exit(main())
