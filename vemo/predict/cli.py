"""python -m vemo.predict VIDEO [VIDEO ...] [checkpoint=zeroshot|demo|RUN_DIR_OR_CKPT] [format=json] [key=value ...]

Extracts each video's features with the extractors the checkpoint was trained on, classifies it,
and prints the ranked classes with the evidence (or JSON). Writes ``predictions.csv`` and, per
video, ``prediction.json``, ``keyframe.png`` and ``timeline.png`` into ``out``.
"""
from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from vemo.cli import reported_errors, run_command
from vemo.config import CONFIG_DIR

log = logging.getLogger("vemo.predict")

PLOTS_AUTO_LIMIT = 20
_POSITIONAL: list[str] = []  # video arguments without "key=": Hydra only parses overrides


def split_arguments(argv: list[str]) -> tuple[list[str], list[str]]:
    """(videos, Hydra arguments): a plain argument that is not an override or a flag is a video."""
    from vemo.extract.links import is_link

    videos, rest = [], []
    for arg in argv:
        if is_link(arg) or ("=" not in arg and not arg.startswith("-")
                            and rest[-1:] not in (["-c"], ["--cfg"], ["--package"], ["-p"])):
            videos.append(arg)
        else:
            rest.append(arg)
    return videos, rest


def find_inputs(positional: list[str], spec: Any, downloads: Path | None = None,
                max_bytes: int | None = None, say=lambda *a: None) -> list[Any]:
    """The videos to classify; links are downloaded into ``downloads`` first (at most ``max_bytes`` each)."""
    from vemo.errors import ConfigError
    from vemo.extract.inputs import VideoInput, find_videos
    from vemo.extract.links import download, is_link
    from vemo.predict.output import unique_ids

    found: list[VideoInput] = []
    items = list(positional) + ([] if not spec else [spec] if isinstance(spec, str) else [str(s) for s in spec])
    for item in items:
        if is_link(item):
            if downloads is None:
                raise ConfigError(f"{item}: links need a download folder")
            say(f"downloading {item} ...")
            path = download(item, downloads / f"{len(found):03d}", max_bytes)
            say(f"  -> {path.name} ({path.stat().st_size / 1e6:.1f} MB)")
            found.append(VideoInput(path.stem, str(path), ""))
        else:
            found += find_videos(item)
    if not found:
        raise ConfigError("no video given: python -m vemo.predict VIDEO [VIDEO ...] [checkpoint=RUN_DIR] "
                          "(or input=FOLDER, a glob or a .txt list)")
    ids = unique_ids([v.id for v in found])
    return [VideoInput(i, v.path, v.label) for i, v in zip(ids, found)]


def want_plots(setting: Any, count: int) -> bool:
    if isinstance(setting, bool):
        return setting
    if str(setting).lower() == "auto":
        return count <= PLOTS_AUTO_LIMIT
    from vemo.errors import ConfigError
    raise ConfigError(f"plots must be true, false or auto, got {setting!r}")


def predict(cfg: DictConfig) -> int:
    from vemo.errors import ConfigError
    from vemo.options import non_negative_int, positive_int

    if cfg.format not in ("text", "json"):
        raise ConfigError(f"format must be text or json, got {cfg.format!r}")
    positive_int(cfg.video_batch, "video_batch")
    non_negative_int(cfg.decode_workers, "decode_workers")
    if cfg.top_k is not None:
        positive_int(cfg.top_k, "top_k")
    positive_int(cfg.max_download_mb, "max_download_mb")
    out = Path(str(cfg.out)).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    text = cfg.format == "text"
    say = (lambda *a: print(*a, flush=True)) if text else (lambda *a: print(*a, file=sys.stderr, flush=True))
    with tempfile.TemporaryDirectory(prefix="vemo-links-") as downloads:  # what links bring, removed after
        videos = find_inputs(_POSITIONAL, cfg.input, Path(downloads), int(cfg.max_download_mb) * 1_000_000,
                             lambda *a: print(*a, file=sys.stderr, flush=True))
        return _predict(cfg, videos, out, text, say)


def _predict(cfg: DictConfig, videos: list[Any], out: Path, text: bool, say) -> int:
    from tqdm import tqdm

    from vemo.io import atomic_write_json
    from vemo.predict.predictor import Predictor
    from vemo.predict.render import save_key_frame, save_timeline
    from vemo.predict.output import CsvWriter, format_prediction, format_summary, safe_folder_name

    plots = want_plots(cfg.plots, len(videos))

    predictor = Predictor.from_checkpoint(str(cfg.checkpoint), device=str(cfg.device), threads=cfg.threads)
    say(f"model: {predictor.describe()}")
    for note in predictor.loaded.notes:
        say(f"note: {note}")
    say("extractors: " + predictor.describe_extractors())

    csv_writer = CsvWriter(out / "predictions.csv", predictor.classes, predictor.shown_modalities)
    results = []
    bar = tqdm(total=len(videos), desc="predicting", unit="video", file=sys.stderr, dynamic_ncols=True,
               disable=len(videos) == 1)
    try:
        if len(videos) == 1:
            # one video decodes in this process (no worker start-up) while the models load in the
            # background, its audio extractors starting before the frames are decoded (the same
            # features as the batched path); several videos stream through decoding workers
            stream = iter([predictor.predict(videos[0].path, id=videos[0].id, explain=bool(cfg.explain),
                                             load_in_background=True)])
        else:
            stream = predictor.predict_many([v.path for v in videos], ids=[v.id for v in videos],
                                            video_batch=int(cfg.video_batch), decode_workers=int(cfg.decode_workers),
                                            explain=bool(cfg.explain))
        for prediction in stream:
            files: dict[str, Path] = {}
            if plots and prediction.ok:
                folder = out / safe_folder_name(prediction.id)
                for label, path in (("key frame", save_key_frame(prediction, folder / "keyframe.png")),
                                    ("timeline", save_timeline(prediction, folder / "timeline.png"))):
                    if path is not None:
                        files[label] = path
                atomic_write_json(folder / "prediction.json", prediction.to_dict())
            csv_writer.add(prediction)
            results.append((prediction, files))
            bar.update(1)
            bar.set_postfix_str(f"{sum(not p.ok for p, _ in results)} failed", refresh=False)
    finally:
        bar.close()
        csv_writer.close()

    predictions = [p for p, _ in results]
    failed = [p for p in predictions if not p.ok]
    if cfg.format == "json":
        docs = [dict(p.to_dict(), files={k: str(v) for k, v in f.items()}) for p, f in results]
        print(json.dumps(docs[0] if len(docs) == 1 else docs, indent=1, ensure_ascii=False))
    else:
        detailed = len(results) <= PLOTS_AUTO_LIMIT
        for prediction, files in results:
            if detailed:
                print()
                print(format_prediction(prediction, predictor.shown_modalities, files, cfg.top_k))
        if not detailed:
            print()
            print(format_summary(predictions))
    say("")
    say(f"{len(predictions)} video{'s' if len(predictions) != 1 else ''}, {len(predictions) - len(failed)} classified, "
        f"{len(failed)} failed")
    say(f"predictions: {out / 'predictions.csv'}")
    if not results or (len(results) == 1 and failed):
        return 1
    return 1 if cfg.strict and failed else 0


@hydra.main(config_path=str(CONFIG_DIR), config_name="predict", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    logging.captureWarnings(True)
    with reported_errors():
        code = predict(cfg)
    if code:
        sys.exit(code)


def main() -> None:
    from vemo.cli import exit_now

    videos, rest = split_arguments(sys.argv[1:])
    _POSITIONAL[:] = videos
    sys.argv = [sys.argv[0], *rest]
    try:
        run_command(_hydra_main, "predict", rest)
    except SystemExit as e:
        exit_now(e.code)
    exit_now(0)


if __name__ == "__main__":
    main()
