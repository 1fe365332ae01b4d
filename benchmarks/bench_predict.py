"""Prediction latency: one 30 s video through ``vemo.predict.Predictor``, cold and warm.

The goals this benchmark reports against, on 2 CPU cores: a warm prediction of a 30 s video in under
5 s with the offline profile, and the whole ``python -m vemo.predict`` command on one 30 s video, a
fresh process, in under 6 s.

    python benchmarks/bench_predict.py                    # demo model, two generated 30 s clips, 5 repeats
    python benchmarks/bench_predict.py --quick            # smoke run (1 repeat)
    python benchmarks/bench_predict.py --checkpoint runs/x --video my.mp4 --no-face-clip
    python benchmarks/bench_predict.py --threads 1        # Predictor(threads=1): extractors one after the other
    python benchmarks/bench_predict.py --checkpoint zeroshot --video sadness.mp4 --no-face-clip --command-runs 5

Clips (made once, cached under ``--cache-dir``):

* **demo**: a generated demo clip (``vemo.demo.videos``) of 30 s at 640x360, 24 fps, one that
  carries a spoken sentence and on-screen words: a few seconds of speech, one caption, moving shapes.
* **talk**: a 30 s "talking face" clip this script composes: the astronaut photo that ships with
  scikit-image (a real face, so the face extractor detects and classifies one on every frame),
  drifting slowly; a caption line that changes every 7.5 s under a fixed title; and speech from
  espeak-ng for the whole 30 s (so Whisper transcribes a full 30 s window, the expensive case).

Measurements, each in a fresh process (so imports count and peak RSS is the predictor's own):

* **cold**: ``python`` start-up, ``import vemo.predict``, ``Predictor.from_checkpoint``,
  ``pipeline()`` (build and load the checkpoint's extractors, warm-up included) and the first
  ``predict()``; the whole command's wall time.
* **command**: ``python -m vemo.predict CLIP checkpoint=...`` exactly as a user runs it (one
  video: decoding while the models load in a background thread), ``--command-runs`` fresh processes
  after one warm-up run; wall, CPU (user + sys) and peak RSS of each whole process, median (min-max).
* **warm**: after one untimed ``predict()``, ``--repeats`` timed ``predict()`` calls of the same file
  (median, min-max), with the split ``Prediction.seconds`` reports (decode: the audio, then the
  frames while the audio extractors already run; extractors: what is left after decoding; classify; "other" is the rest: result checks, evidence, key frame). Then each piece alone, median
  over the repeats: decoding (``vemo.extract.decode.decode`` with the pipeline's settings), each
  extractor's ``extract([video])`` with the thread settings the predictor gave it, and the classifier
  (``predict_features`` with and without ``explain``). Extractors of the offline profile that the
  checkpoint does not use (the demo model has no faces) are timed alone too, and all offline
  extractors side by side, to estimate a model that uses the whole profile.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

CHILD_T0, CHILD_EPOCH0 = time.perf_counter(), time.time()  # a child's clocks start before its heavy imports

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (emit, log, machine_cores, mib, print_header, print_table,  # noqa: E402
                     rss_now, rss_peak, run_child)
from _predict_clips import demo_clip, talk_clip  # noqa: E402

GOAL_SECONDS = 5.0
COMMAND_GOAL_SECONDS = 6.0  # the whole python -m vemo.predict process on one 30 s clip
RESULTS = Path(__file__).resolve().parent / "results" / "predict-2cpu.txt"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="a .ckpt or run folder (default: the demo model, built once under --cache-dir)")
    p.add_argument("--video", type=Path, default=None, help="your own video (default: the generated 30 s demo clip)")
    p.add_argument("--no-face-clip", action="store_true",
                   help="skip the composed 30 s talking-face clip (real face, speech throughout)")
    p.add_argument("--cache-dir", type=Path, default=Path("~/.cache/vemo"),
                   help="where the demo model and the clips are kept (default ~/.cache/vemo)")
    p.add_argument("--size", default="640x360", help="size of the generated clips (default 640x360)")
    p.add_argument("--seconds", type=float, default=30.0, help="length of the generated clips (default 30)")
    p.add_argument("--repeats", type=int, default=None, help="timed warm repeats (default 5; 1 with --quick)")
    p.add_argument("--cold-repeats", type=int, default=1, help="cold runs, each a fresh process (default 1)")
    p.add_argument("--command-runs", type=int, default=None,
                   help="timed runs of the python -m vemo.predict command, after one warm-up (default 5; 0 with --quick)")
    p.add_argument("--threads", type=int, default=None,
                   help="Predictor(threads=...): cores split between extractors (default: all usable cores)")
    p.add_argument("--out", type=Path, default=RESULTS,
                   help="results file (default benchmarks/results/predict-2cpu.txt; not written with --quick)")
    p.add_argument("--quick", action="store_true", help="one warm repeat, no cold run: a smoke test")
    p.add_argument("--child", choices=["cold", "warm"], help=argparse.SUPPRESS)
    p.add_argument("--child-args", default="{}", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 5)
    if args.command_runs is None:
        args.command_runs = 0 if args.quick else 5
    if args.command_runs < 0:
        p.error(f"--command-runs must be 0 or more, got {args.command_runs}")
    if args.quick:
        args.cold_repeats = 0
    return args


# ---------------------------------------------------------------------------------------------- children
def _median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def timed(fn, repeats: int) -> dict:
    """Wall and process CPU seconds (all threads) of ``repeats`` calls."""
    walls, cpus = [], []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return {"times": walls, "cpu": cpus}


def child_cold(opts: dict) -> dict:
    """Imports, checkpoint, extractors, first prediction: each timed, in this fresh process."""
    marks = {"script start-up": time.perf_counter() - CHILD_T0}
    start = time.perf_counter()
    from vemo.predict import Predictor
    marks["import vemo.predict"] = time.perf_counter() - start
    start = time.perf_counter()
    import torch  # noqa: F401 - from_checkpoint imports it; timed apart
    marks["import torch (from_checkpoint does)"] = time.perf_counter() - start
    start = time.perf_counter()
    predictor = Predictor.from_checkpoint(opts["checkpoint"], threads=opts["threads"])
    marks["Predictor.from_checkpoint (rest)"] = time.perf_counter() - start
    # time each extractor's loading: pipeline() calls pool.load_extractors, here once per extractor
    from vemo.extract import pool as extractor_pool
    original, loads = extractor_pool.load_extractors, {}

    def load_each(extractors, **options):
        for m, ex in extractors.items():
            begin = time.perf_counter()
            original({m: ex}, **options)
            loads[f"{m} ({ex.registered_name()})"] = time.perf_counter() - begin
    extractor_pool.load_extractors = load_each
    start = time.perf_counter()
    try:
        pipe = predictor.pipeline()
    finally:
        extractor_pool.load_extractors = original
    marks["pipeline(): build + load extractors"] = time.perf_counter() - start
    for name, seconds in loads.items():
        marks[f"  load {name}, warm-up included"] = seconds
    start = time.perf_counter()
    prediction = predictor.predict(opts["video"])
    marks["first predict()"] = time.perf_counter() - start
    if not prediction.ok:
        raise SystemExit(f"prediction failed: {prediction.error}")
    return {"marks": marks, "epoch_start": CHILD_EPOCH0, "epoch_end": time.time(), "peak_rss": rss_peak(),
            "first_split": prediction.seconds, "pipeline_load": pipe.load_seconds}


def child_warm(opts: dict) -> dict:
    import torch

    from vemo.extract.decode import decode
    from vemo.extract.pool import ExtractorPool, build_extractors, configure_threads, run_extractor
    from vemo.extract.records import check_results
    from vemo.predict import Predictor
    from vemo.predict.pipeline import token_times_of  # the predictor's own token times, for the timeline

    repeats, video = int(opts["repeats"]), opts["video"]
    predictor = Predictor.from_checkpoint(opts["checkpoint"], threads=opts["threads"])
    pipe = predictor.pipeline(text_on_first_use=False)  # a warm process: every model loaded, as the app does
    threads = {m: getattr(ex, "threads", getattr(ex, "cpu_threads", None)) for m, ex in pipe.extractors.items()}
    log(f"  warm-up prediction of {Path(video).name}")
    first = predictor.predict(video)
    if not first.ok:
        raise SystemExit(f"prediction failed: {first.error}")
    rss_loaded = rss_now()

    out: dict = {"concurrent": pipe.pool.concurrent, "threads": threads, "torch_threads": torch.get_num_threads(),
                 "states": first.states, "top": first.top, "duration": first.duration,
                 "evidence": {k: first.evidence.get(k) for k in ("transcript", "on_screen_text", "faces")}}
    e2e = []
    for r in range(repeats):
        log(f"  predict() {r + 1}/{repeats}")
        start, cpu = time.perf_counter(), time.process_time()
        p = predictor.predict(video)
        e2e.append({"total": time.perf_counter() - start, "cpu": time.process_time() - cpu,
                    "load": os.getloadavg()[0], **p.seconds})
    out["e2e"] = e2e

    s = pipe.decode
    out["decode_settings"] = {"num_frames": s.num_frames, "fps": s.fps, "max_side": s.max_side,
                              "sample_rates": list(s.sample_rates), "need_frames": s.need_frames}
    out["decode"] = timed(lambda: decode(video, "bench", num_frames=s.num_frames, fps=s.fps,
                                         sample_rates=s.sample_rates, max_side=s.max_side,
                                         max_audio_seconds=s.max_audio_seconds, need_frames=s.need_frames),
                          repeats)
    decoded = decode(video, "bench", num_frames=s.num_frames, fps=s.fps, sample_rates=s.sample_rates,
                     max_side=s.max_side, max_audio_seconds=s.max_audio_seconds, need_frames=s.need_frames)
    out["frames"] = [int(len(decoded.frames)), int(decoded.width), int(decoded.height)]

    def alone(extractors: dict) -> dict:
        result = {}
        for m, ex in extractors.items():
            log(f"  {m} alone x{repeats}")
            result[m] = {"name": ex.registered_name(), **timed(lambda: run_extractor(ex, [decoded]), repeats)}
        return result

    out["alone"] = alone(pipe.extractors)

    # the classifier on these features, as predict() calls it
    per_modality = pipe.pool.run([decoded])
    checked = check_results("bench", {m: r[0] for m, r in per_modality.items()}, pipe.specs, lambda _: None)
    token_times = {m: token_times_of(m, checked.features[m], decoded, checked.side, pipe.specs[m].kind)
                   for m in pipe.specs}
    model_features = {m: checked.features[m] for m in predictor.modalities}  # not the sources' (zero-shot)
    for explain in (True, False):
        out[f"classify_explain_{explain}"] = timed(
            lambda: predictor.predict_features(model_features, token_times=token_times,
                                               duration=decoded.duration, explain=explain), max(repeats, 5))

    # extractors of the profile the checkpoint does not use: alone, then every one side by side
    from vemo.extract.extraction import profile_extractors

    extra_opts = {m: o for m, o in profile_extractors(opts["profile"]).items() if m not in pipe.extractors}
    if extra_opts:
        extras = build_extractors(extra_opts, "cpu")
        every = {**pipe.extractors, **extras}
        concurrent = configure_threads(every, opts["threads"] or machine_cores())  # changes only the extras
        for m, ex in extras.items():
            start = time.perf_counter()
            ex.ensure_loaded()
            log(f"  loaded {m} ({ex.registered_name()}) in {time.perf_counter() - start:.1f} s")
        out["extra_alone"] = alone(extras)
        out["extra_states"] = {}
        for m, ex in extras.items():
            got = run_extractor(ex, [decoded])[0]
            out["extra_states"][m] = (f"failed: {got}" if isinstance(got, BaseException) else
                                      f"absent: {got.absent}" if got.features is None else
                                      f"ok, {len(got.features)} tokens")
        pool = ExtractorPool(every, concurrent)
        pool.run([decoded])  # orders the pool (longest first), as predict() has after its first video
        out["profile_side_by_side"] = {**timed(lambda: pool.run([decoded]), repeats), "concurrent": concurrent,
                                       "modalities": list(every)}
        pool.close()
    out["rss_loaded"], out["peak_rss"] = rss_loaded, rss_peak()
    predictor.close()
    return out


def run_in_child(mode: str, opts: dict) -> dict:
    start, epoch = time.perf_counter(), time.time()
    result = run_child(__file__, ["--child", mode, "--child-args", json.dumps(opts)])
    result["command_wall"] = time.perf_counter() - start
    if "epoch_start" in result:  # interpreter start-up before the script, and exit after its last line
        result["startup"] = result["epoch_start"] - epoch
        result["exit"] = epoch + result["command_wall"] - result["epoch_end"]
    return result


def time_command(cmd: list[str], runs: int, warmup: int = 1) -> dict:
    """Each run a fresh process: wall seconds, CPU seconds (user + sys, every thread) and peak RSS
    (bytes) of the whole process, read from the kernel's accounting of the finished child."""
    import subprocess
    import tempfile

    out: dict[str, list[float]] = {"wall": [], "cpu": [], "peak_rss": []}
    for i in range(warmup + runs):
        with tempfile.TemporaryFile() as errors:
            start = time.perf_counter()
            child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errors)
            _, status, usage = os.wait4(child.pid, 0)
            wall = time.perf_counter() - start
            child.returncode = os.waitstatus_to_exitcode(status)
            if child.returncode:
                errors.seek(0)
                tail = errors.read().decode(errors="replace").strip().splitlines()[-5:]
                raise SystemExit(f"{' '.join(cmd)} exited with {child.returncode}: " + " | ".join(tail))
        if i >= warmup:
            out["wall"].append(wall)
            out["cpu"].append(usage.ru_utime + usage.ru_stime)
            out["peak_rss"].append(usage.ru_maxrss * 1024.0)  # KiB on Linux
    return out


def predict_command(checkpoint: Path, video: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "vemo.predict", str(video), f"checkpoint={checkpoint}", f"out={out}"]


# ---------------------------------------------------------------------------------------------- report
def fmt(xs: list[float] | None) -> str:
    if not xs:
        return "-"
    if len(xs) == 1:
        return f"{xs[0]:.2f}"
    return f"{_median(xs):.2f} ({min(xs):.2f}-{max(xs):.2f})"


def report(args: argparse.Namespace, checkpoint: Path, clips: list[tuple[str, Path, str]],
           cold: list[dict], warm: dict[str, dict], wall: float, command: dict | None = None) -> None:
    print(f"checkpoint: {checkpoint}")
    for name, path, what in clips:
        print(f"clip {name:<5}: {path} ({what})")
    first = next(iter(warm.values()))
    ds = first["decode_settings"]
    fps = "" if ds["fps"] is None else f" (fps {ds['fps']})"
    print(f"decoding  : {ds['num_frames']} frames{fps}, "
          f"longest side <= {ds['max_side']}, audio at {ds['sample_rates']} Hz; predictor runs "
          f"{first['concurrent']} extractors at once, threads per extractor "
          + ", ".join(f"{m}={t}" for m, t in first["threads"].items()) + f", torch threads {first['torch_threads']}")
    print()

    if command:
        runs = len(command["wall"])
        print(f"COMMAND: python -m vemo.predict {clips[0][1].name} checkpoint={checkpoint}, the whole process, "
              f"{runs} runs after one warm-up run; median (min-max)")
        print_table(["figure", "value"], [
            ["wall s", fmt(command["wall"])], ["CPU s (user + sys)", fmt(command["cpu"])],
            ["peak RSS MiB", f"{mib(_median(command['peak_rss']))} ({mib(min(command['peak_rss']))}-"
                             f"{mib(max(command['peak_rss']))})"]], align="lr")
        print()

    if cold:
        print(f"COLD: a fresh process, first clip ({clips[0][0]}); seconds"
              + (f", median of {len(cold)} runs" if len(cold) > 1 else ""))
        keys = list(cold[0]["marks"])
        rows = [[k, f"{_median([c['marks'][k] for c in cold]):.2f}"] for k in keys]
        rows.insert(0, ["python start-up (interpreter, before the script)",
                        f"{_median([c['startup'] for c in cold]):.2f}"])
        rows.append(["process exit (models freed, threads joined)", f"{_median([c['exit'] for c in cold]):.2f}"])
        rows.append(["whole command (wall)", f"{_median([c['command_wall'] for c in cold]):.2f}"])
        print_table(["stage", "seconds"], rows, align="lr")
        split = cold[0]["first_split"]
        print("first predict() split: " + ", ".join(f"{k} {v:.2f} s" for k, v in split.items())
              + f"; peak RSS of the cold process {mib(cold[0]['peak_rss'])} MiB\n")

    names = list(warm)
    print(f"WARM: wall seconds, median (min-max) of {args.repeats} repeats; cpu: process CPU seconds (all "
          "threads), median; each clip in its own process")
    header = ["stage"] + [h for n in names for h in (f"{n} wall s", "cpu s")]

    def row(label: str, get) -> list[str]:
        cells = [label]
        for n in names:
            item = get(warm[n])
            if item is None:
                cells += ["-", "-"]
            elif isinstance(item, dict):
                cells += [fmt(item["times"]), f"{_median(item['cpu']):.2f}" if item.get("cpu") else "-"]
            elif isinstance(item, list):
                cells += [fmt(item), "-"]
            else:
                cells += [f"{item:.2f}", "-"]
        return cells

    rows = [row("predict() end to end", lambda w: {"times": [e["total"] for e in w["e2e"]],
                                                     "cpu": [e["cpu"] for e in w["e2e"]]})]
    # predict() decodes the audio first and starts the audio extractors on it while the frames
    # decode, so "decode" overlaps speech; "extractors" is what is left after decoding
    for key, label in (("decode", "  decode (audio, then frames)"),
                       ("extract (batch)", "  extractors, after decoding"), ("classify", "  classify (explain=True)")):
        rows.append(row(label, lambda w, key=key: [e.get(key, 0.0) for e in w["e2e"]]))
    rows.append(row("  other (checks, evidence, key frame)", lambda w: [
        e["total"] - e.get("decode", 0) - e.get("extract (batch)", 0) - e.get("classify", 0) for e in w["e2e"]]))
    rows.append(row("decoding alone", lambda w: w["decode"]))
    for m, info in first["alone"].items():
        rows.append(row(f"{m} ({info['name']}) alone", lambda w, m=m: w["alone"][m]))
    rows.append(row("  sum of the extractors alone", lambda w: sum(_median(v["times"]) for v in w["alone"].values())))
    rows.append(row("classifier, explain=True", lambda w: w["classify_explain_True"]))
    rows.append(row("classifier, explain=False", lambda w: w["classify_explain_False"]))
    if "extra_alone" in first:
        for m, info in first["extra_alone"].items():
            rows.append(row(f"{m} ({info['name']}) alone, not in checkpoint", lambda w, m=m: w["extra_alone"][m]))
        sbs = first["profile_side_by_side"]
        rows.append(row(f"all {len(sbs['modalities'])} {args.profile} extractors side by side",
                        lambda w: w["profile_side_by_side"]))
        rows.append(row(f"predict() estimate, whole {args.profile} profile", estimate))
    print_table(header, rows, align="l" + "r" * (2 * len(names)))

    for n in names:
        w = warm[n]
        ev = w["evidence"]
        seen = []
        if ev.get("transcript"):
            seen.append(f"transcript {len(ev['transcript'].split())} words")
        if ev.get("on_screen_text"):
            seen.append(f"on-screen {ev['on_screen_text']}")
        if ev.get("faces"):
            seen.append(f"faces {ev['faces'].get('frames_with_face')}/{ev['faces'].get('frames')} frames")
        print(f"{n} clip: {w['duration']:.1f} s, {w['frames'][0]} frames of {w['frames'][1]}x{w['frames'][2]}; "
              f"top class {w['top']}; modalities "
              + ", ".join(f"{m} {s}" for m, s in w["states"].items())
              + "".join(f", {m} (not in checkpoint) {s}" for m, s in w.get("extra_states", {}).items())
              + "; " + "; ".join(seen))
    print()
    if command:
        med = _median(command["wall"])
        print(f"GOAL      : python -m vemo.predict on one {warm[names[0]]['duration']:.0f} s video, a fresh process: "
              f"{med:.2f} s, goal < {COMMAND_GOAL_SECONDS:g} s: {'met' if med < COMMAND_GOAL_SECONDS else 'NOT met'}")
    for n in names:
        med = _median([e["total"] for e in warm[n]["e2e"]])
        verdict = "met" if med < GOAL_SECONDS else "NOT met"
        print(f"GOAL      : warm prediction of a {warm[n]['duration']:.0f} s video ({n} clip, {len(warm[n]['states'])} "
              f"modalities of the checkpoint): {med:.2f} s, goal < {GOAL_SECONDS:g} s: {verdict}")
        if "profile_side_by_side" in warm[n]:
            est = estimate(warm[n])
            print(f"            with the whole {args.profile} profile (+ {', '.join(warm[n]['extra_alone'])}), "
                  f"estimated: {est:.2f} s, goal < {GOAL_SECONDS:g} s: {'met' if est < GOAL_SECONDS else 'NOT met'}")
    for n in names:
        e2e = warm[n]["e2e"]
        used = _median([e["cpu"] for e in e2e]) / _median([e["total"] for e in e2e])
        loads = [e["load"] for e in e2e]
        print(f"cores used: {n} clip predict() kept {used:.2f} of {machine_cores()} cores busy on average "
              "(cpu / wall); "
              f"1-min load during its repeats {min(loads):.2f}-{max(loads):.2f}"
              + ("; near 1 with a load above the cores: other processes took the second core" if used < 1.25 and
                 max(loads) > machine_cores() else ""))
    print()
    load = os.getloadavg()
    print("peak RSS  : warm process (every model of the checkpoint loaded"
          + (", plus the extra extractors" if "extra_alone" in first else "") + "): "
          + ", ".join(f"{n} {mib(warm[n]['peak_rss'])} MiB" for n in names)
          + f"; after loading and one prediction {mib(first['rss_loaded'])} MiB")
    print(f"load avg  : {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1/5/15 min) at the end")
    print(f"runtime   : {wall:.0f} s for this benchmark (clips and demo model cached)")


def estimate(w: dict) -> float:
    """predict() with every profile extractor: the measured predict() minus its extraction part,
    plus all profile extractors side by side (medians)."""
    med = _median([e["total"] for e in w["e2e"]])
    extract = _median([e.get("extract (batch)", 0.0) for e in w["e2e"]])
    return med - extract + _median(w["profile_side_by_side"]["times"])


class Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self) -> None:
        for s in self.streams:
            s.flush()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.profile = "offline"
    if args.child:
        opts = json.loads(args.child_args)
        emit((child_cold if args.child == "cold" else child_warm)(opts))
        return 0

    started = time.perf_counter()
    cache = args.cache_dir.expanduser()
    width, height = (int(x) for x in args.size.split("x"))
    checkpoint = args.checkpoint
    if checkpoint is None:
        from vemo.demo.model import ensure_demo_model
        checkpoint = ensure_demo_model(cache, progress=False)
    clips: list[tuple[str, Path, str]] = []
    if args.video is not None:
        clips.append(("yours", args.video.expanduser().resolve(), "--video"))
    else:
        clips.append(("demo", *demo_clip(cache, args.seconds, (width, height))))
    if not args.no_face_clip:
        clips.append(("talk", *talk_clip(cache, args.seconds, (width, height))))

    text = io.StringIO()
    with contextlib.redirect_stdout(Tee(sys.stdout, text)):
        print_header("prediction latency: one video, cold and warm", threads=args.threads or machine_cores())
    base = {"checkpoint": str(checkpoint), "threads": args.threads, "repeats": args.repeats, "profile": args.profile}
    command = None
    if args.command_runs:
        import tempfile

        log(f"python -m vemo.predict, {args.command_runs} runs after one warm-up ({clips[0][0]} clip)")
        with tempfile.TemporaryDirectory(prefix="vemo-bench-predict-") as out:
            command = time_command(predict_command(checkpoint, clips[0][1], Path(out)), args.command_runs)
    cold = []
    for r in range(args.cold_repeats):
        log(f"cold run {r + 1}/{args.cold_repeats} ({clips[0][0]} clip)")
        cold.append(run_in_child("cold", {**base, "video": str(clips[0][1])}))
    warm = {}
    for name, path, _ in clips:
        log(f"warm runs, {name} clip")
        warm[name] = run_in_child("warm", {**base, "video": str(path)})
    with contextlib.redirect_stdout(Tee(sys.stdout, text)):
        report(args, checkpoint, clips, cold, warm, time.perf_counter() - started, command)
    if not args.quick:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text.getvalue())
        log(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
