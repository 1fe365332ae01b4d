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
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from _common import emit, log, machine_cores, mib, print_header, print_table, proc_status, run_child

GENERATOR_VERSION = 1  # bump when the generated store changes, so cached stores are rebuilt
DIMS = {"frames": 512, "audio": 768, "faces": 768, "speech": 768, "ocr": 768}
VECTOR = ("speech", "ocr")  # one vector per video
CAPS = {"frames": 160, "audio": 144, "faces": 80}  # the trailer caps: stored sequences are this long at most
PRESENCE = {"frames": 1.0, "audio": 1.0, "faces": 0.8, "speech": 0.7, "ocr": 0.6}
FACES_AT_CAP = 0.6  # of the videos with faces, this share fills the cap; the others have 1..79 face tokens
GENRES = ["Action", "Adventure", "Animation", "Biography", "Comedy", "Crime", "Documentary", "Drama", "Family",
          "Fantasy", "History", "Horror", "Music", "Musical", "Mystery", "Romance", "Sci-Fi", "Sport",
          "Thriller", "War", "Western"]  # MovieNet's 21 genres
GENRE_WEIGHTS = [9, 6, 3, 3, 10, 6, 1, 16, 3, 4, 2, 5, 2, 1, 4, 7, 4, 1, 8, 1, 1]  # drama and comedy dominate
LABELS_PER_VIDEO = {1: 0.22, 2: 0.35, 3: 0.30, 4: 0.13}  # about 2.3 genres per trailer
POOL_ROWS = 4096  # random rows each modality's features are drawn from (content does not matter here)
SHARD_SIZE = 512  # videos per shard, as a merged extraction writes them
# Validation videos, the same number in every store: validation, and the calibration that follows training
# (which evaluates in batches of 256), then cost the same whatever the store's size
VAL_VIDEOS = 32
COMPLETE = "complete.json"  # written last: the store, labels and splits are whole
IN_PROGRESS = "generating.json"  # written first: a folder holding it without COMPLETE is a killed generation
MOVIENET_VIDEOS = 26000
EPOCH_GROWTH_LIMIT = 25  # MiB per 1,000 steps above which anonymous memory counts as growing during an epoch
SAMPLE_S = 0.2
# samples between two readings of Pss_Anon: every second with cores to spare, else every 5 s
PSS_EVERY = 5 if machine_cores() >= 8 else 25
PROGRESS_PREFIX = "[scale] "


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


# ---------------------------------------------------------------- the generated stores
def store_dir(root: Path, videos: int, seed: int) -> Path:
    return root / f"movienet-n{videos}-s{seed}-g{GENERATOR_VERSION}"


def complete_info(folder: Path, videos: int, seed: int) -> dict[str, Any] | None:
    """The generation record of a whole store with these settings, or None (missing, partial, other)."""
    marker = folder / COMPLETE
    if not marker.is_file():
        return None
    info = json.loads(marker.read_text())
    if (info.get("videos"), info.get("seed"), info.get("generator")) != (videos, seed, GENERATOR_VERSION):
        return None
    from vemo.store import FeatureStore
    from vemo.store.format import StoreError

    try:
        store = FeatureStore(folder / "store")  # index and every shard header, not the data
    except StoreError as e:
        log(f"{folder}: {e}; generating it again")
        return None
    if len(store) != videos or not all((folder / name).is_file() for name in ("labels.csv", "classes.txt")):
        return None
    return info


def ensure_store(root: Path, videos: int, seed: int) -> tuple[Path, dict[str, Any], bool]:
    """The store folder, its generation record (with its split sizes), and whether it was reused."""
    folder = store_dir(root, videos, seed)
    info = complete_info(folder, videos, seed)
    reused = info is not None
    if not reused:
        if folder.exists():
            if (folder / IN_PROGRESS).is_file() or (folder / COMPLETE).is_file():
                shutil.rmtree(folder)  # a killed or outdated generation of this script
            elif any(folder.iterdir()):
                sys.exit(f"{folder} exists and was not made by this script; remove it or choose another --root")
        info = generate(folder, videos, seed)
    return folder, info | write_splits(folder, videos, seed), reused


def write_splits(folder: Path, videos: int, seed: int) -> dict[str, int]:
    """splits/{train,val,test}.txt: ``VAL_VIDEOS`` drawn for validation, the rest for training, no test.
    Drawn from the seed alone, so rewriting them on every start changes nothing."""
    import numpy as np

    ids = [f"tt{i:07d}" for i in range(videos)]
    order = np.random.default_rng([seed, videos, 1]).permutation(videos)
    splits = {"train": sorted(ids[i] for i in order[VAL_VIDEOS:]), "val": sorted(ids[i] for i in order[:VAL_VIDEOS]),
              "test": []}
    (folder / "splits").mkdir(exist_ok=True)
    for name, members in splits.items():
        (folder / "splits" / f"{name}.txt").write_text("".join(v + "\n" for v in members))
    return {"train": len(splits["train"]), "val": len(splits["val"])}


def draw_lengths(rng, n: int) -> dict[str, Any]:
    import numpy as np

    lengths = {}
    for m in DIMS:
        present = rng.random(n) < PRESENCE[m]
        if m in VECTOR:
            full = np.ones(n, dtype=np.int64)
        elif m == "faces":
            full = np.where(rng.random(n) < FACES_AT_CAP, CAPS[m], rng.integers(1, CAPS[m], n))
        else:
            full = np.full(n, CAPS[m], dtype=np.int64)
        lengths[m] = np.where(present, full, 0)
    return lengths


def generate(folder: Path, videos: int, seed: int) -> dict[str, Any]:
    """Write the store with ``FeatureStoreWriter`` (shards of 512 videos), then the labels and the marker."""
    import numpy as np

    from vemo.store.format import ModalitySpec
    from vemo.store.writer import FeatureStoreWriter

    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / IN_PROGRESS).write_text(json.dumps({"videos": videos, "seed": seed, "pid": os.getpid()}))
    rng = np.random.default_rng([seed, videos])
    # float32 pools: the writer takes float32 views as they are and rounds them to float16 once
    pools = {m: rng.standard_normal((POOL_ROWS, d), dtype=np.float32) for m, d in DIMS.items()}
    specs = {m: ModalitySpec(dim=d, kind="vector" if m in VECTOR else "sequence", dtype="float16",
                             extractor={"name": f"synthetic-{m}", "generator": GENERATOR_VERSION})
             for m, d in DIMS.items()}
    ids = [f"tt{i:07d}" for i in range(videos)]
    counts = {m: 0 for m in DIMS}
    last_report = time.perf_counter()
    with FeatureStoreWriter(folder / "store", specs, shard_size=SHARD_SIZE,
                            metadata={"profile": "bench-scale", "generator": GENERATOR_VERSION}) as writer:
        for start in range(0, videos, SHARD_SIZE):
            n = min(SHARD_SIZE, videos - start)
            lengths = draw_lengths(rng, n)
            # one gather per modality and shard; each video's features are views into it
            chunks = {m: pools[m][rng.integers(0, POOL_ROWS, int(lengths[m].sum()))] for m in DIMS}
            offsets = {m: np.concatenate([[0], np.cumsum(lengths[m])]) for m in DIMS}
            for i in range(n):
                vid = ids[start + i]
                features = {m: chunks[m][offsets[m][i]:offsets[m][i + 1]] if lengths[m][i] else None
                            for m in DIMS}
                # the fields an extraction records, so the index has a real store's size
                states = {m: "ok" if lengths[m][i] else f"absent: no {m} found" for m in DIMS}
                writer.add(vid, features, source=f"/data/movienet/trailers/{vid}.mp4",
                           sha256=f"{rng.integers(0, 2**63):016x}" * 4, duration=float(rng.uniform(60, 180)),
                           extra={"size": int(rng.integers(5e6, 6e7)), "mtime": 1.7e9, "extracted_at": time.time(),
                                  "modalities": states, "notes": [], "header_duration": None})
                for m in DIMS:
                    counts[m] += int(lengths[m][i] > 0)
            if time.perf_counter() - last_report > 15 or start + n == videos:
                last_report = time.perf_counter()
                log(f"{PROGRESS_PREFIX}generating {folder.name}: {start + n:,}/{videos:,} videos, "
                    f"{time.perf_counter() - started:.0f}s")

    label_sets = draw_labels(rng, videos)
    (folder / "classes.txt").write_text("\n".join(GENRES) + "\n")
    with open(folder / "labels.csv", "w") as f:
        f.write("id,labels\n")
        f.writelines(f"{vid},{'|'.join(GENRES[c] for c in label_sets[i])}\n" for i, vid in enumerate(ids))
    info = {"videos": videos, "seed": seed, "generator": GENERATOR_VERSION, "shard_size": SHARD_SIZE,
            "generation_s": round(time.perf_counter() - started, 1), "bytes": folder_bytes(folder / "store"),
            "present": counts, "labels_per_video": float(np.mean([len(s) for s in label_sets]))}
    (folder / COMPLETE).write_text(json.dumps(info, indent=1))
    (folder / IN_PROGRESS).unlink()
    return info


def draw_labels(rng, videos: int) -> list[list[int]]:
    import numpy as np

    weights = np.asarray(GENRE_WEIGHTS, dtype=float) / sum(GENRE_WEIGHTS)
    sizes = rng.choice(list(LABELS_PER_VIDEO), size=videos, p=list(LABELS_PER_VIDEO.values()))
    return [sorted(rng.choice(len(GENRES), size=int(k), replace=False, p=weights).tolist()) for k in sizes]


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# ---------------------------------------------------------------- inside the training process
def step_timer(out: str, progress_every_s: float = 30.0):
    """A Lightning callback (built by Hydra from ``+callbacks.step_timer._target_=bench_scale.step_timer``)
    that records when each training step ends and writes the times to ``out`` after the epoch."""
    from lightning.pytorch.callbacks import Callback

    class StepTimer(Callback):
        def __init__(self) -> None:
            self.epoch_start = None
            self.ends: list[float] = []
            self.sizes: list[int] = []
            self.val_start = self.val_end = None
            self.last_progress = 0.0
            self.cuda = False

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self.cuda = pl_module.device.type == "cuda"
            self.epoch_start = self.last_progress = time.time()
            self.total = trainer.num_training_batches
            if trainer.max_steps and trainer.max_steps > 0:
                self.total = min(self.total, trainer.max_steps)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if self.cuda:  # the step has finished on the device, not only been queued
                import torch
                torch.cuda.synchronize(pl_module.device)
            now = time.time()
            self.ends.append(now)
            self.sizes.append(int(batch["labels"].shape[0]))
            if now - self.last_progress >= progress_every_s:
                self.last_progress = now
                rate = sum(self.sizes) / (now - self.epoch_start)
                print(f"{PROGRESS_PREFIX}  step {len(self.ends):,}/{self.total:,}, {rate:,.1f} samples/s so far",
                      file=sys.stderr, flush=True)

        def on_validation_epoch_start(self, trainer, pl_module) -> None:
            if self.ends and self.val_start is None:
                self.val_start = time.time()

        def on_validation_epoch_end(self, trainer, pl_module) -> None:
            if self.ends and self.val_end is None:
                self.val_end = time.time()

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            Path(out).write_text(json.dumps({
                "epoch_start": self.epoch_start, "ends": self.ends, "sizes": self.sizes,
                "val_start": self.val_start, "val_end": self.val_end,
                "threads": __import__("torch").get_num_threads()}))

    return StepTimer()


# ---------------------------------------------------------------- memory of a process tree
def read_status(pid: int) -> dict[str, int] | None:
    """RssAnon, RssFile, RssShmem, VmRSS, VmHWM of one process in bytes (None once it is gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("RssAnon", "RssFile", "RssShmem", "VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return out if "RssAnon" in out else None  # a zombie (an exited worker) has no memory lines


def read_pss_anon(pid: int) -> int | None:
    """Pss_Anon from smaps_rollup: anonymous pages shared copy-on-write with forked workers count once."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss_Anon:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (DataLoader workers)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children_of(p))
    return found


def children_of(pid: int) -> list[int]:
    """From /proc/<pid>/task/*/children; kernels without that file are scanned for the parent pid."""
    try:
        kids = []
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids.extend(int(c) for c in f.read().split())
        return kids
    except FileNotFoundError:
        if not os.path.exists(f"/proc/{pid}/task/{pid}"):
            return []  # the process is gone
    except ProcessLookupError:
        return []
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return kids


class TreeWatcher(threading.Thread):
    """Samples the memory of a process and its descendants every ``SAMPLE_S`` seconds until stopped."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[dict[str, Any]] = []
        self.stop_event = threading.Event()
        self.max_workers = 0

    def run(self) -> None:
        n = 0
        while not self.stop_event.is_set():
            tree = descendants(self.pid)
            now = time.time()
            statuses = {p: s for p in tree if (s := read_status(p)) is not None}
            if self.pid not in statuses:
                break
            main = statuses[self.pid]
            sample = {"t": now, "procs": len(statuses), "main_anon": main["RssAnon"], "main_file": main["RssFile"],
                      "main_shmem": main["RssShmem"], "main_rss": main["VmRSS"], "main_hwm": main["VmHWM"],
                      "tree_anon": sum(s["RssAnon"] for s in statuses.values()),
                      "tree_rss": sum(s["VmRSS"] for s in statuses.values()),
                      "tree_file": sum(s["RssFile"] for s in statuses.values())}
            if n % PSS_EVERY == 0:  # smaps_rollup walks the page tables: ~0.2 s for a process mapping 12 GB
                pss = [read_pss_anon(p) for p in statuses]
                sample["tree_pss_anon"] = sum(pss) if all(v is not None for v in pss) else None
            self.samples.append(sample)
            self.max_workers = max(self.max_workers, len(statuses) - 1)
            n += 1
            self.stop_event.wait(SAMPLE_S)

    def peak(self, key: str, start: float | None = None, end: float | None = None) -> int | None:
        values = [s[key] for s in self.samples if s.get(key) is not None
                  and (start is None or s["t"] >= start) and (end is None or s["t"] <= end)]
        return max(values) if values else None

    def at(self, key: str, t: float) -> int | None:
        """The first sample at or after ``t``."""
        later = [s for s in self.samples if s["t"] >= t and s.get(key) is not None]
        return later[0][key] if later else None

    def low(self, key: str, start: float, end: float) -> int | None:
        values = [s[key] for s in self.samples if start <= s["t"] <= end and s.get(key) is not None]
        return min(values) if values else None

    def before(self, key: str, t: float) -> int | None:
        """The last sample at or before ``t``."""
        earlier = [s for s in self.samples if s["t"] <= t and s.get(key) is not None]
        return earlier[-1][key] if earlier else None


# ---------------------------------------------------------------- one training run
def train_command(args: argparse.Namespace, folder: Path, head: str, run_dir: Path, timer_out: Path) -> list[str]:
    caps = ",".join(f"{m}:{v}" for m, v in CAPS.items())
    cmd = [sys.executable, "-m", "vemo.train", "data=store", f"data.store={folder / 'store'}",
           f"data.splits={folder / 'splits'}", f"fusion={head}",
           f"trainer={'gpu' if args.device == 'cuda' else 'cpu'}", "trainer.max_epochs=1",
           f"data.max_len={{{caps}}}", f"data.batch_size={args.batch_size}", "data.eval_batch_size=128",
           f"data.num_workers={args.num_workers}",
           "logger=csv", "test=false", f"seed={args.seed}", f"hydra.run.dir={run_dir}",
           "~callbacks.progress_bar", "+trainer.enable_progress_bar=false",
           "+callbacks.step_timer._target_=bench_scale.step_timer", f"+callbacks.step_timer.out={timer_out}"]
    if args.device == "cuda":
        cmd.append("+data.pin_memory=true")  # not in configs/data/store.yaml; FeatureDataModule takes it
    if args.max_steps:
        cmd.append(f"+trainer.max_steps={args.max_steps}")
    return cmd + list(args.train_args)


def run_training(args: argparse.Namespace, folder: Path, head: str, label: str) -> dict[str, Any]:
    run_dir = args.root / "runs" / f"{time.strftime('%Y%m%d-%H%M%S')}_{folder.name}_{head}"
    run_dir.mkdir(parents=True)
    timer_out = run_dir / "step_times.json"
    cmd = train_command(args, folder, head, run_dir, timer_out)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent),
                                                                     os.environ.get("PYTHONPATH")])),
               OMP_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED="1",
               **dict(kv.split("=", 1) for kv in args.child_env))
    log(f"{PROGRESS_PREFIX}{label} {head}: {shlex.join(cmd)}")
    started = time.time()
    output_path = run_dir / "output.log"
    with open(output_path, "w") as output:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        watcher = TreeWatcher(proc.pid)
        watcher.start()
        for line in proc.stdout:  # progress lines are passed on, everything goes to the run's log
            output.write(line)
            if line.startswith(PROGRESS_PREFIX):
                log(line.rstrip())
        proc.wait()
    watcher.stop_event.set()
    watcher.join()
    wall = time.time() - started
    if proc.returncode != 0 or not timer_out.is_file():
        tail = output_path.read_text().splitlines()[-25:]
        raise RuntimeError(f"training {head} on {folder.name} failed (exit {proc.returncode}); the end of "
                           f"{output_path}:\n" + "\n".join(tail))
    times = json.loads(timer_out.read_text())
    (run_dir / "memory.json").write_text(json.dumps({"samples": watcher.samples, "steps": times}))
    ends, sizes = times["ends"], times["sizes"]
    starts = [times["epoch_start"]] + ends[:-1]
    rates = [n / (b - a) for n, a, b in zip(sizes, starts, ends) if b > a][args.warmup_steps:]
    train_s = ends[-1] - times["epoch_start"]
    w = watcher
    result = {
        "label": label, "head": head, "store": folder.name, "wall_s": wall, "steps": len(ends),
        "samples": sum(sizes), "train_s": train_s, "setup_s": times["epoch_start"] - started,
        "median_rate": statistics.median(rates) if rates else None, "mean_rate": sum(sizes) / train_s,
        "threads": times["threads"], "workers_seen": w.max_workers, "samples_taken": len(w.samples),
        "peak_main_anon": w.peak("main_anon"), "peak_tree_anon": w.peak("tree_anon"),
        "peak_tree_pss_anon": w.peak("tree_pss_anon"), "peak_main_rss": w.peak("main_rss"),
        "peak_tree_rss": w.peak("tree_rss"), "peak_main_file": w.peak("main_file"),
        "peak_main_shmem": w.peak("main_shmem"), "main_hwm": w.peak("main_hwm"),
        # anonymous memory when training starts (setup done) and at the end of the epoch's steps
        "main_anon_train_start": w.at("main_anon", times["epoch_start"]),
        "main_anon_train_end": w.before("main_anon", ends[-1]),
        "peak_main_anon_setup": w.peak("main_anon", end=times["epoch_start"]),
        "peak_main_anon_train": w.peak("main_anon", times["epoch_start"], ends[-1]),
        "run_dir": str(run_dir),
    }
    # growth while the epoch runs: anonymous memory rises and falls with every step (activations), so compare its
    # lowest value over a tenth of the steps early in the epoch (past the first steps) with the last tenth's
    n, k = len(ends), max(5, len(ends) // 10)
    first = max(args.warmup_steps, n // 10)
    if n - 1 - k > first + k:
        early, late = w.low("main_anon", ends[first], ends[first + k]), w.low("main_anon", ends[n - 1 - k], ends[-1])
        if early is not None and late is not None:
            result["epoch_growth"] = (late - early, (n - 1 - k / 2) - (first + k / 2))
    log(f"{PROGRESS_PREFIX}{label} {head}: {result['samples']:,} samples in {train_s:.0f}s "
        f"(median {result['median_rate'] or float('nan'):,.1f} samples/s), peak anon main {mib(result['peak_main_anon'])} MiB, "
        f"tree {mib(result['peak_tree_anon'])} MiB; whole run {wall:.0f}s")
    if not args.keep_runs:
        shutil.rmtree(run_dir, ignore_errors=True)
    return result


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
