"""bench_scale.py's training runs: one epoch of ``python -m vemo.train`` in a child process, timed by
a callback inside it (``step_timer``) and its memory sampled from outside (``TreeWatcher``)."""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import log, mib
from _scale_memory import TreeWatcher
from _scale_store import CAPS, PROGRESS_PREFIX


def step_timer(out: str, progress_every_s: float = 30.0):
    """A Lightning callback (built by Hydra from ``+callbacks.step_timer._target_=_scale_training.step_timer``)
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


def train_command(args: argparse.Namespace, folder: Path, head: str, run_dir: Path, timer_out: Path) -> list[str]:
    caps = ",".join(f"{m}:{v}" for m, v in CAPS.items())
    cmd = [sys.executable, "-m", "vemo.train", "data=store", f"data.store={folder / 'store'}",
           f"data.splits={folder / 'splits'}", f"fusion={head}",
           f"trainer={'gpu' if args.device == 'cuda' else 'cpu'}", "trainer.max_epochs=1",
           f"data.max_len={{{caps}}}", f"data.batch_size={args.batch_size}", "data.eval_batch_size=128",
           f"data.num_workers={args.num_workers}",
           "logger=csv", "test=false", f"seed={args.seed}", f"hydra.run.dir={run_dir}",
           "~callbacks.progress_bar", "+trainer.enable_progress_bar=false",
           "+callbacks.step_timer._target_=_scale_training.step_timer", f"+callbacks.step_timer.out={timer_out}"]
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
