"""Train-step throughput of every registered fusion head inside a real ``vemo.train.module.VideoClassifier``.

A step is what training does per batch: forward (per-modality projection -> fusion head -> classifier),
the model's own loss, backward, and an AdamW step. Batches are random but follow the batch contract
({"features", "masks", "labels", "ids"}) at Ekman-6 shapes: batch 32, frames 16x512, audio 16x768,
faces up to 16x768 (missing for some videos), speech 1x768 and text 1x768 (missing for some).
``--max-len trailer`` uses the trailer caps instead (160 frames / 144 audio / 80 faces).

Each head runs in its own process, so its peak memory is its own.

    python benchmarks/bench_heads.py                        # full run, Ekman-6 shapes (~1-2 min on 2 cores)
    python benchmarks/bench_heads.py --quick                # smoke run
    python benchmarks/bench_heads.py --max-len trailer      # trailer shapes
    python benchmarks/bench_heads.py --max-len frames=160,audio=144,faces=80 --heads crossattn
    python benchmarks/bench_heads.py --heads crossattn published-pairwise@512   # NAME@WIDTH sets d_model

Besides vemo's heads it times the two published classifiers that ``pairwise`` and ``joint`` follow
(``published-pairwise``, ``published-joint``; see published_models.py), and prints the ratios:
crossattn against the published emotion classifier at its published width (512), and each of
pairwise / joint against its published original at the same width.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from _common import (emit, log, machine_cores, mib, print_header, print_table, reset_peak_rss, rss_now,
                     rss_peak, run_child)

CLASSES = ["anger", "disgust", "fear", "joy", "sadness", "surprise"]  # Ekman-6
DIMS = {"frames": 512, "audio": 768, "faces": 768, "speech": 768, "text": 768}
VECTOR = ("speech", "text")  # one vector per video (T = 1)
PRESETS = {"ekman": {"frames": 16, "audio": 16, "faces": 16},
           "trailer": {"frames": 160, "audio": 144, "faces": 80}}
# share of videos that have the modality at all (as in the demo data; frames and audio always exist)
PRESENCE = {"frames": 1.0, "audio": 1.0, "faces": 0.8, "speech": 0.7, "text": 0.6}
PUBLISHED = ("published-pairwise", "published-joint")
# the published emotion classifier's width (its released config: d_model 512, 4 heads, dropout 0.5)
PUBLISHED_PAIRWISE_WIDTH = 512


def comparisons(d_model: int) -> list[tuple[str, str]]:
    """(vemo entry, published entry) pairs whose throughput ratio the benchmark prints: crossattn
    against the published emotion classifier at its published width, and pairwise / joint against
    their originals at the same width and structure (the trailer transformer had one layer)."""
    w = PUBLISHED_PAIRWISE_WIDTH
    pairs = [("crossattn", f"published-pairwise@{w}"),
             (f"pairwise@{d_model}", f"published-pairwise@{d_model}"),
             (f"joint@{d_model},depth=1", f"published-joint@{d_model}")]
    if d_model != w:
        pairs += [(f"pairwise@{w}", f"published-pairwise@{w}"), (f"joint@{w},depth=1", f"published-joint@{w}")]
    return pairs


def default_entries(d_model: int) -> list[str]:
    """Every registered head at ``d_model``, then what the comparisons need."""
    import vemo.fusion

    entries = list(vemo.fusion.names())
    for pair in comparisons(d_model):
        known = {entry_key(e, d_model) for e in entries}
        entries += [e for e in pair if entry_key(e, d_model) not in known]
    return entries


def parse_entry(text: str, d_model: int) -> tuple[str, int, dict]:
    """'crossattn' -> ('crossattn', d_model, {}); 'joint@512,depth=1' -> ('joint', 512, {'depth': 1})."""
    import yaml

    head, *settings = text.split(",")
    name, _, width = head.partition("@")
    if (width and not width.isdigit()) or any("=" not in kv for kv in settings):
        raise SystemExit(f"--heads {text}: expected NAME, NAME@WIDTH or NAME@WIDTH,key=value,...")
    options = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in settings)}
    return name, int(width) if width else d_model, options


def entry_key(text: str, d_model: int) -> tuple:
    name, width, options = parse_entry(text, d_model)
    return name, width, tuple(sorted(options.items()))


def parse_max_len(text: str) -> dict[str, int]:
    """'ekman', 'trailer', one int for every sequence modality, or 'frames=160,audio=144,faces=80'."""
    if text in PRESETS:
        return dict(PRESETS[text])
    if text.isdigit():
        return {m: int(text) for m in PRESETS["ekman"]}
    out = dict(PRESETS["ekman"])
    for part in text.split(","):
        name, _, value = part.partition("=")
        if name.strip() not in out or not value.strip().isdigit() or int(value) < 1:
            raise argparse.ArgumentTypeError(
                f"expected ekman, trailer, an int, or frames=N,audio=N,faces=N; got {text!r}")
        out[name.strip()] = int(value)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--heads", nargs="+", default=None,
                   help="what to time: fusion heads and published-pairwise / published-joint, each optionally "
                        "NAME@WIDTH (default: every registered head at --d-model, the published models at "
                        "--d-model and at 512 with pairwise and joint at 512)")
    p.add_argument("--batch-size", type=int, default=32, help="(default 32)")
    p.add_argument("--d-model", type=int, default=128, help="VideoClassifier d_model (default 128)")
    p.add_argument("--max-len", type=parse_max_len, default="ekman",
                   help="tokens per sequence modality: ekman (16/16/16), trailer (160/144/80), an int, "
                        "or frames=N,audio=N,faces=N (default ekman)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed steps first, at least 1, cut short after a quarter of --budget-s (default 3; 2 with --quick)")
    p.add_argument("--steps", type=int, default=None, help="steps per timed repeat (default 8; 3 with --quick)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats; the median is reported (default 5; 2 with --quick)")
    p.add_argument("--budget-s", type=float, default=None,
                   help="seconds of timed training steps per head, after which repeats are cut short "
                        "(at least 2 are kept); bounds the run on a busy machine (default 40; 10 with --quick)")
    p.add_argument("--no-inference", action="store_true", help="skip the forward-only (eval, no grad) timing")
    p.add_argument("--threads", type=int, nargs="+", default=[machine_cores()],
                   help="torch.set_num_threads; several values time every head at each (default: the usable cores)")
    p.add_argument("--device", default="cpu", help="cpu (default), or cuda where there is one")
    p.add_argument("--seed", type=int, default=0, help="seed of the random batches and the model (default 0)")
    p.add_argument("--quick", action="store_true", help="small, fast smoke run")
    p.add_argument("--head", help=argparse.SUPPRESS)  # internal: time one head in this process
    args = p.parse_args(argv)
    args.warmup = args.warmup if args.warmup is not None else (2 if args.quick else 3)
    args.steps = args.steps or (3 if args.quick else 8)
    args.repeats = args.repeats or (2 if args.quick else 5)
    args.budget_s = args.budget_s or (10.0 if args.quick else 40.0)
    return args


# ---------------------------------------------------------------- random batches (the batch contract)
def random_batch(batch_size: int, max_len: dict[str, int], generator, device):
    """One batch as the DataModule yields it. Frames and audio fill their cap (the padded shape a batch
    has once any video reaches it); faces have 1..cap tokens; faces, speech and text are missing for some
    videos (all-False mask rows). Padded slots hold random values: heads must ignore them."""
    import torch

    features, masks = {}, {}
    for m, dim in sorted(DIMS.items()):
        t = 1 if m in VECTOR else max_len[m]
        x = torch.randn(batch_size, t, dim, generator=generator)
        if m in ("frames", "audio"):
            lengths = torch.full((batch_size,), t)
        elif m in VECTOR:
            lengths = torch.ones(batch_size, dtype=torch.long)
        else:
            lengths = torch.randint(1, t + 1, (batch_size,), generator=generator)
        present = torch.rand(batch_size, generator=generator) < PRESENCE[m]
        lengths = torch.where(present, lengths, torch.zeros_like(lengths))
        features[m] = x.to(device)
        masks[m] = (torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)).to(device)
    labels = torch.randint(0, len(CLASSES), (batch_size,), generator=generator).to(device)
    return {"features": features, "masks": masks, "labels": labels,
            "ids": [f"random_{i:03d}" for i in range(batch_size)]}


# ---------------------------------------------------------------- child: one head
def measure_head(args: argparse.Namespace) -> dict:
    import torch

    from vemo.train.module import VideoClassifier

    torch.set_num_threads(args.threads[0])
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    gen = torch.Generator().manual_seed(args.seed)
    batches = [random_batch(args.batch_size, args.max_len, gen, device) for _ in range(4)]

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    rss_base = rss_now()
    peak_reset = reset_peak_rss()  # the peak from here on is this head's model, optimizer and steps
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        cuda_base = torch.cuda.memory_allocated(device)

    torch.manual_seed(args.seed)
    name, width, options = parse_entry(args.head, args.d_model)
    if name in PUBLISHED:
        from published_models import PublishedJoint, PublishedPairwise

        if name == "published-pairwise":
            model = PublishedPairwise(DIMS, len(CLASSES), d_model=width).to(device)
        else:
            lengths = {m: 1 if m in VECTOR else args.max_len[m] for m in DIMS}
            model = PublishedJoint(DIMS, lengths, len(CLASSES), d_model=width).to(device)
        model.loss = lambda logits, labels: torch.nn.functional.cross_entropy(logits, labels)
        fusion_part = model  # "fusion params": the whole published model
    else:
        model = VideoClassifier(modality_dims=DIMS, classes=CLASSES, fusion={"name": name, **options},
                                d_model=width).to(device)
        fusion_part = model.net.fusion
    model.train()
    # VideoClassifier.configure_optimizers needs a Trainer (for the LR schedule's length); the same
    # optimizer without the schedule costs the same per step. The published models get the same
    # (fused) AdamW, so the comparison is of the networks alone.
    optimizer = (model.build_optimizer() if name not in PUBLISHED
                 else torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05, fused=True))

    def train_step(batch) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        logits = model(batch["features"], batch["masks"])
        loss = model.loss(logits, batch["labels"])
        loss.backward()
        optimizer.step()
        return loss.detach()

    def timed(fn, budget_s: float, what: str) -> tuple[list[float], int]:
        """Samples/s of ``--repeats`` repeats of ``--steps`` calls. Past ``budget_s`` (a busy machine)
        the current repeat ends early and no new one starts once two are done; returns the steps timed."""
        rates, done, start = [], 0, time.perf_counter()
        for r in range(args.repeats):
            sync()
            t, n = time.perf_counter(), 0
            while n < args.steps:
                fn(done)
                done, n = done + 1, n + 1
                if time.perf_counter() - start > budget_s:
                    break
            sync()
            rates.append(n * args.batch_size / (time.perf_counter() - t))
            log(f"[{args.head} t{args.threads[0]}] {what} repeat {r + 1}/{args.repeats}: {rates[-1]:,.0f} samples/s "
                f"over {n} steps")
            if time.perf_counter() - start > budget_s and len(rates) >= 2:
                break
        return rates, done

    losses = []

    def train(i: int) -> None:
        losses.append(train_step(batches[i % len(batches)]))

    def warm_up(fn) -> None:
        """``--warmup`` untimed calls, at least one, stopping early past a quarter of the budget."""
        start = time.perf_counter()
        for i in range(max(1, args.warmup)):
            fn(i)
            if time.perf_counter() - start > args.budget_s / 4:
                break

    warm_up(train)
    rates, steps_timed = timed(train, args.budget_s, "train")
    if not torch.isfinite(torch.stack(losses)).all():
        raise FloatingPointError(f"{args.head}: the training loss became {losses}")
    peak = rss_peak() - rss_base if not cuda else torch.cuda.max_memory_allocated(device) - cuda_base

    infer_rates = []
    if not args.no_inference:
        model.eval()

        def infer(i: int) -> None:
            b = batches[i % len(batches)]
            model(b["features"], b["masks"])

        with torch.inference_mode():
            warm_up(infer)
            infer_rates, _ = timed(infer, args.budget_s / 4, "infer")

    n_params = sum(p.numel() for p in model.parameters())
    return {
        "head": args.head, "name": name, "width": width, "options": options, "threads": torch.get_num_threads(), "params": n_params,
        "fusion_params": sum(p.numel() for p in fusion_part.parameters()),
        "rates": rates, "median": statistics.median(rates), "steps_timed": steps_timed,
        "infer_median": statistics.median(infer_rates) if infer_rates else None,
        "peak": peak, "peak_reset": peak_reset, "cuda": cuda, "rss_base": rss_base,
        # fp32 parameters, gradients and AdamW's two moments
        "state_bytes": 4 * 4 * n_params,
        "shapes": {m: list(x.shape) for m, x in batches[0]["features"].items()},
    }


# ---------------------------------------------------------------- parent
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.head:
        emit(measure_head(args))
        return

    import torch

    import vemo.fusion

    heads = args.heads or default_entries(args.d_model)
    unknown = [h for h in heads if parse_entry(h, args.d_model)[0] not in vemo.fusion.names() + list(PUBLISHED)]
    unique: dict[tuple, str] = {}
    for h in heads:  # 'crossattn' and 'crossattn@128' are the same run
        unique.setdefault(entry_key(h, args.d_model), h)
    heads = list(unique.values())
    if unknown:
        sys.exit(f"unknown fusion head(s) {unknown}; registered: {', '.join(vemo.fusion.names())}; "
                 f"published models: {', '.join(PUBLISHED)}")
    torch.set_num_threads(args.threads[0])
    print_header("vemo fusion heads: VideoClassifier train-step throughput", ", ".join(map(str, args.threads)))
    shape_text = ", ".join(f"{m} {1 if m in VECTOR else args.max_len[m]}x{d}" for m, d in sorted(DIMS.items()))
    print(f"heads: {', '.join(heads)}  (registered: {', '.join(vemo.fusion.names())})")
    print(f"batch {args.batch_size}: {shape_text}; present for "
          + ", ".join(f"{m} {p:.0%}" for m, p in sorted(PRESENCE.items()) if p < 1)
          + f" of videos; {len(CLASSES)} classes; d_model {args.d_model}; device {args.device}")
    print(f"step: forward + loss + backward + AdamW; {args.warmup} warm-up steps, then {args.repeats} repeats "
          f"x {args.steps} steps (cut short after {args.budget_s:g} s of timed steps per head)")
    print(flush=True)

    results = []
    max_len = ",".join(f"{m}={v}" for m, v in args.max_len.items())
    common = ["--batch-size", str(args.batch_size), "--d-model", str(args.d_model), "--max-len", max_len,
              "--warmup", str(args.warmup), "--steps", str(args.steps), "--repeats", str(args.repeats),
              "--budget-s", str(args.budget_s), "--device", args.device, "--seed", str(args.seed)] + (["--no-inference"] if args.no_inference else [])
    for head in heads:
        for threads in args.threads:
            results.append(run_child(Path(__file__), ["--head", head, "--threads", str(threads)] + common))

    rows = []
    for r in results:
        opts = ",".join(f"{k}={v}" for k, v in r["options"].items())
        rows.append([r["name"] + (f" ({opts})" if opts else ""), r["width"], r["threads"], f"{r['params']:,}", f"{r['fusion_params']:,}", f"{r['median']:,.0f}",
                     f"{min(r['rates']):,.0f} - {max(r['rates']):,.0f}", f"{len(r['rates'])}/{r['steps_timed']}",
                     f"{1000 * args.batch_size / r['median']:.1f}",
                     f"{r['infer_median']:,.0f}" if r["infer_median"] else "-",
                     mib(r["peak"]), mib(r["state_bytes"])])
    memory = "peak GPU MiB" if results and results[0]["cuda"] else "peak RSS MiB"
    print("Train-step throughput (samples/s; median and range over repeats)")
    print_table(["head", "d_model", "threads", "params", "fusion params", "train samples/s", "range", "repeats/steps", "ms/step", "infer samples/s",
                 memory, "param+grad+adam MiB"], rows)
    if results and not results[0]["cuda"]:
        reset_note = ("reset just before the model is built" if results[0]["peak_reset"]
                      else "NOT resettable here: since process start")
        print(f"peak RSS MiB: the process's peak RSS over model build, warm-up and timed steps, minus its RSS\n"
              f"before the model was built (peak {reset_note}; base RSS {mib(results[0]['rss_base'])} MiB).")
    else:
        print("peak GPU MiB: torch.cuda.max_memory_allocated over model build and steps, minus what was allocated before.")
    print("params: the whole VideoClassifier (projections, fusion head, classifier); fusion params: the head alone\n"
          "(for the published models, both are the whole model: their own encoders and decoder).\n"
          "infer samples/s: forward only, eval mode, inference_mode. param+grad+adam: 16 bytes per parameter.")
    print_ratios(results, args.d_model)


def print_ratios(results: list[dict], d_model: int) -> None:
    """Train-step throughput ratios of the pairs the heads are judged by, measured in this run."""
    rate = {(entry_key(r["head"], d_model), r["threads"]): r["median"] for r in results}
    lines = []
    for threads in sorted({r["threads"] for r in results}):
        for ours, theirs in comparisons(d_model):
            a, b = rate.get((entry_key(ours, d_model), threads)), rate.get((entry_key(theirs, d_model), threads))
            if a and b:
                lines.append(f"{ours} / {theirs}, {threads} thread(s): {a / b:.2f}x ({a:,.0f} vs {b:,.0f} samples/s)")
    if lines:
        print("\nRatios of train-step throughput (medians of this run):")
        for line in lines:
            print("  " + line)


if __name__ == "__main__":
    sys.exit(main())
