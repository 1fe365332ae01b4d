"""Data-loading throughput: the memory-mapped feature store next to the same features held in RAM.

Both variants iterate the training DataLoader of ``vemo.data.FeatureDataModule`` over the built-in
demo store (Ekman-6 shapes: 16x512 frames, 16x768 audio, 0-16x768 faces, 1x768 speech and text,
normalization on, all five modalities). The "ram" variant copies every video's features into one
array per modality first and swaps them in under the same ``FeatureDataset`` (same subsampling,
float32 cast, whole batches gathered at once), the same ``EpochSampler`` and batch size: only the
storage differs.

Each variant runs in its own process, so its RSS is its own.

    python benchmarks/bench_loading.py                       # full run (~1 min on 2 cores)
    python benchmarks/bench_loading.py --quick               # smoke run (~30 s)
    python benchmarks/bench_loading.py --cache-dir ~/.cache/vemo --num-workers 0 2
"""
from __future__ import annotations

import argparse
import gc
import shutil
import statistics
import sys
import time
from pathlib import Path

from _common import (children_peak_rss, emit, log, machine_cores, mapped_rss, mib, print_header, print_table,
                     proc_status, rss_now, rss_peak, run_child, temp_dir)

MODALITIES = ["audio", "faces", "frames", "ocr", "speech"]
VARIANTS = ("mmap", "ram")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="folder for the demo store (reused when present); default: a temp dir removed at the end")
    p.add_argument("--num-videos", type=int, default=None, help="demo size (default 1600; 320 with --quick)")
    p.add_argument("--batch-size", type=int, default=32, help="(default 32)")
    p.add_argument("--epochs", type=int, default=None,
                   help="training epochs timed per repeat (default 3; 1 with --quick)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats; the median is reported (default 5; 2 with --quick)")
    p.add_argument("--warmup-epochs", type=int, default=1, help="untimed epochs first: worker start-up, caches (default 1)")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), help="(default: mmap ram)")
    p.add_argument("--num-workers", type=int, nargs="+", default=None,
                   help="DataLoader workers to try for each variant (default: 0 2; 0 with --quick)")
    p.add_argument("--threads", type=int, default=machine_cores(), help="torch.set_num_threads (default: the usable cores)")
    p.add_argument("--quick", action="store_true", help="small, fast smoke run")
    # internal: one measured variant, run by the parent in a fresh process
    p.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.num_videos = args.num_videos or (320 if args.quick else 1600)
    args.epochs = args.epochs or (1 if args.quick else 3)
    args.repeats = args.repeats or (2 if args.quick else 5)
    args.num_workers = args.num_workers if args.num_workers is not None else ([0] if args.quick else [0, 2])
    return args


# ---------------------------------------------------------------- the in-RAM storage
class InMemoryFeatures:
    """Every video's features copied out of a ``FeatureStore`` into RAM: one array per modality (same
    dtype as stored), videos one after another. Offers the calls ``FeatureDataset`` makes on a store."""

    def __init__(self, store, modalities: list[str]):
        import numpy as np

        self.modalities = {m: store.modalities[m] for m in modalities}
        self.ids = list(store.ids)
        self._position = {vid: i for i, vid in enumerate(self.ids)}
        # np.concatenate copies out of the memory map into private (anonymous) memory
        self.rows = {m: np.concatenate([store.features(i, m) for i in range(len(self.ids))]) for m in modalities}
        self.offsets = {m: np.concatenate([[0], np.cumsum(store.lengths(m))]) for m in modalities}

    def position(self, video_id: str) -> int:
        return self._position[video_id]

    def features(self, position: int, modality: str):
        off = self.offsets[modality]
        return self.rows[modality][off[position]:off[position + 1]]

    def spans(self, positions, modality: str):
        import numpy as np

        off = self.offsets[modality]
        positions = np.asarray(positions)
        return np.zeros(len(positions), np.int64), off[positions], off[positions + 1] - off[positions]

    def gather(self, shard: int, modality: str, rows):
        return self.rows[modality][rows]

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.rows.values())


# ---------------------------------------------------------------- child: one variant
def measure_variant(args: argparse.Namespace) -> dict:
    t_import = time.perf_counter()
    import numpy as np
    import torch

    from vemo.data import FeatureDataModule, collate  # noqa: F401  (collate: the loader's collate_fn)
    from vemo.data.dataset import FeatureDataset

    torch.set_num_threads(args.threads)
    rss_imports = rss_now()
    log(f"[{args.variant} w{args.workers}] imports {time.perf_counter() - t_import:.1f}s, "
        f"RSS {mib(rss_imports)} MiB")

    t0 = time.perf_counter()
    dm = FeatureDataModule(store=args.root / "store", labels=args.root / "labels.csv", modalities=MODALITIES,
                           batch_size=args.batch_size, normalize=True, num_workers=args.workers)
    dm.setup("fit")
    ram_bytes = None
    if args.variant == "ram":
        mmap_ds = dm.datasets["train"]
        ram = InMemoryFeatures(dm.store, mmap_ds.modalities)
        ram_bytes = ram.nbytes()
        ram_ds = FeatureDataset(ram, mmap_ds.ids, mmap_ds.targets, mmap_ds.modalities, mmap_ds.max_len,
                                train=mmap_ds.train, modality_dropout=mmap_ds.modality_dropout,
                                seed=mmap_ds.seed)
        for key in [(0, 0), (len(ram_ds) - 1, 3)]:  # the same items, bit for bit
            a, b = mmap_ds[key], ram_ds[key]
            assert all(np.array_equal(a["features"][m], b["features"][m]) for m in MODALITIES), key
        keys = [(i, 2) for i in range(0, len(ram_ds), 37)]  # and the same batches
        a, b = mmap_ds.__getitems__(keys), ram_ds.__getitems__(keys)
        assert all(torch.equal(a["features"][m], b["features"][m]) for m in MODALITIES)
        dm.datasets["train"] = ram_ds  # the DataModule builds the loader as always
    setup_s = time.perf_counter() - t0
    rss_setup = rss_now()
    anon_max = proc_status().get("RssAnon", 0)

    loader = dm.train_dataloader()
    n_train = len(dm.datasets["train"])
    first = next(iter(loader))
    shapes = {m: list(first["features"][m].shape) for m in sorted(first["features"])}
    assert sorted(shapes) == MODALITIES and first["labels"].shape[0] == args.batch_size

    epoch = 0

    def run_epoch() -> int:
        nonlocal epoch
        loader.sampler.set_epoch(epoch)  # what Lightning does at every epoch start
        epoch += 1
        n = 0
        for batch in loader:
            n += len(batch["ids"])
        return n

    for _ in range(args.warmup_epochs):
        run_epoch()
    rates = []
    for r in range(args.repeats):
        t = time.perf_counter()
        n = sum(run_epoch() for _ in range(args.epochs))
        rates.append(n / (time.perf_counter() - t))
        anon_max = max(anon_max, proc_status().get("RssAnon", 0))
        log(f"[{args.variant} w{args.workers}] repeat {r + 1}/{args.repeats}: {rates[-1]:,.0f} samples/s")

    status = proc_status()
    result = {
        "variant": args.variant, "workers": args.workers, "train_videos": n_train, "shapes": shapes,
        "rates": rates, "median": statistics.median(rates), "setup_s": setup_s,
        "rss_imports": rss_imports, "rss_setup": rss_setup, "rss_peak": rss_peak(),
        "anon_end": status.get("RssAnon"), "anon_max": anon_max,
        "store_mapped": mapped_rss(args.root / "store"),
        "ram_bytes": ram_bytes,
    }
    del first, loader  # persistent workers exit here and are waited for, so their peak RSS is counted
    gc.collect()
    result["worker_peak"] = children_peak_rss() if args.workers else None
    return result


# ---------------------------------------------------------------- parent
def store_summary(root: Path) -> tuple[int, dict[str, tuple[int, int, str]]]:
    from vemo.store import FeatureStore

    store = FeatureStore(root / "store")
    sizes = {}
    for m, spec in sorted(store.modalities.items()):
        files = list((root / "store" / "shards").glob(f"*/{m}.data.npy"))
        sizes[m] = (spec.dim, sum(f.stat().st_size for f in files), spec.kind)
    return len(store), sizes


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.variant:
        emit(measure_variant(args))
        return

    import torch

    torch.set_num_threads(args.threads)
    print_header("vemo data-loading throughput: memory-mapped store vs the same features in RAM", args.threads)
    from vemo.demo.features import demo_dir, ensure_demo

    cache = args.cache_dir.expanduser() if args.cache_dir else temp_dir("vemo-bench-loading-")
    try:
        reused = (demo_dir(cache, args.num_videos) / "labels.csv").is_file()
        t = time.perf_counter()
        root = ensure_demo(cache, num_videos=args.num_videos)
        n_videos, sizes = store_summary(root)
        print(f"demo store: {root} ({'reused' if reused else f'built in {time.perf_counter() - t:.1f}s'}), "
              f"{n_videos} videos, {mib(sum(s for _, s, _ in sizes.values()))} MiB of features on disk")
        print("  " + ", ".join(f"{m} {d}-d {k} {mib(s)} MiB" for m, (d, s, k) in sizes.items()))
        print(f"settings: batch {args.batch_size}, normalize on, modalities {', '.join(MODALITIES)}, "
              f"{args.warmup_epochs} warm-up epoch(s), then {args.repeats} repeats x {args.epochs} epoch(s)")
        print(flush=True)

        results = []
        for workers in args.num_workers:
            for variant in args.variants:
                child_args = ["--variant", variant, "--root", str(root), "--workers", str(workers),
                              "--batch-size", str(args.batch_size), "--epochs", str(args.epochs),
                              "--repeats", str(args.repeats), "--warmup-epochs", str(args.warmup_epochs),
                              "--threads", str(args.threads)]
                results.append(run_child(Path(__file__), child_args))
    finally:
        if args.cache_dir is None:
            shutil.rmtree(cache, ignore_errors=True)

    first = results[0]
    print(f"train split: {first['train_videos']} videos per epoch; batch shapes "
          + ", ".join(f"{m} {tuple(s)}" for m, s in first["shapes"].items()))
    print()
    base = {r["workers"]: r["median"] for r in results if r["variant"] == "mmap"}
    rows = []
    for r in results:
        ratio = r["median"] / base[r["workers"]] if r["workers"] in base else None
        rows.append([r["variant"], r["workers"], f"{r['median']:,.0f}",
                     f"{min(r['rates']):,.0f} - {max(r['rates']):,.0f}",
                     "1.00" if r["variant"] == "mmap" else (f"{ratio:.2f}" if ratio else "n/a"),
                     f"{r['setup_s']:.1f}"])
    print("Throughput (training DataLoader, samples/s; median and range over repeats)")
    print_table(["variant", "workers", "median samples/s", "range", "x mmap", "setup s"], rows)

    rows = []
    for r in results:
        rows.append([r["variant"], r["workers"], mib(r["rss_imports"]), mib(r["rss_setup"]), mib(r["rss_peak"]),
                     mib(r["rss_peak"] - r["rss_imports"]), mib(r["anon_max"]), mib(r["store_mapped"]),
                     mib(r["ram_bytes"]), mib(r["worker_peak"])])
    print("Memory of the main process (MiB; each variant in its own process)")
    print_table(["variant", "workers", "RSS imports", "RSS setup", "peak RSS", "peak - imports",
                 "anon max", "store mapped", "RAM copy", "worker peak"], rows)
    print("RSS imports: after importing torch/lightning/vemo. RSS setup: after DataModule.setup (+ the RAM copy).\n"
          "peak RSS: VmHWM over the whole run. anon max: largest private (anonymous) RSS, sampled after setup and\n"
          "after each repeat. store mapped: the store's file pages resident in this process at the end (page\n"
          "cache: shared with workers and other processes, reclaimable; the ram variant still maps the store\n"
          "because setup reads it). RAM copy: bytes of the preloaded tensors. worker peak: largest peak RSS of\n"
          "one DataLoader worker (it shares the parent's pages, so do not simply add it).")


if __name__ == "__main__":
    sys.exit(main())
