"""Writers: H.264 video files (with the source's audio) and folders of PNG frames.

Decisions:

* Atomic output: everything is written under a hidden temporary name beside
  the target (``.name.XXXX.partial.mp4`` / ``.name.XXXX.partial/``) and
  ``os.replace``-d onto the final name by ``close()``.  ``abort()`` (or leaving
  the ``with`` block by an exception) deletes the temporary data; the final
  name never holds a truncated file.
* Video: ``libx264`` yuv420p, ``crf`` (default 18), BT.709 limited range,
  tagged as such.  ``.webm`` switches the H.264 default to ``libvpx-vp9``.
* Odd sizes: 4:2:0 H.264 cannot code odd widths/heights (not even with SPS
  cropping, whose unit is 2 pixels).  Default ``odd_size="yuv444p"`` keeps the
  exact size by encoding 4:4:4 (High 4:4:4 profile: FFmpeg/VLC/mpv play it,
  some browsers and hardware decoders do not).  ``odd_size="pad"`` keeps
  yuv420p and pads the right/bottom edge by one replicated pixel instead.
* Timing: frames written with ``pts`` (in ``time_base``, e.g. the source
  stream's) keep their timestamps, so variable frame rate survives; frames
  without ``pts`` follow on at the constant ``fps`` (25 when unknown).
  Non-increasing timestamps are bumped by one tick.  As ``ffmpeg`` does, the
  output starts at 0: the first pts (or the audio's start, when earlier) is
  subtracted from video and audio alike, so sync is kept.
* Audio: every audio stream of ``audio_from`` is carried over after the video
  is encoded: packets are copied when the container takes the codec in a
  widely playable way (AAC/MP3/AC-3/ALAC... into mp4/mov, nearly anything into
  mkv, Opus/Vorbis into webm), else re-encoded (AAC; Opus for webm).  Video
  and audio packets are interleaved by time; audio past the end of the video
  is dropped (as ``ffmpeg -shortest``).
"""
from __future__ import annotations

import os
import shutil
import secrets
from fractions import Fraction
from pathlib import Path

import numpy as np

from .audio_mux import mux_with_audio
from .errors import RefcolorError
from .video import VIDEO_SUFFIXES, load_av, short_reason

FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi", ".webm": "webm"}
_CRF_CODECS = {"libx264", "libx264rgb", "libx265", "libvpx-vp9", "libvpx", "libaom-av1", "libsvtav1"}


def _check_target(path: Path) -> Path:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise RefcolorError(f"output folder does not exist: {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RefcolorError(f"output folder is not writable: {parent}")
    return parent


def temp_name(parent: Path, stem: str, suffix: str) -> Path:
    """A hidden, unused name beside the target; created with the default (umask) permissions."""
    while True:
        p = parent / f".{stem}.{os.getpid()}-{secrets.token_hex(3)}.partial{suffix}"
        if not os.path.lexists(p):
            return p


def _fraction(x) -> Fraction | None:
    if x is None or x == 0:
        return None
    if isinstance(x, float):
        return Fraction(x).limit_denominator(1001)
    return Fraction(x)


def _as_rgb(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    if rgb.dtype != np.uint8 or rgb.shape != (height, width, 3):
        raise ValueError(f"expected a {height}x{width}x3 uint8 RGB frame, got {rgb.shape} {rgb.dtype}")
    return np.ascontiguousarray(rgb)


class _Writer:
    """Shared context-manager protocol: an exception in the block aborts."""

    _done = True

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self):
        if not self._done:
            try:
                self.abort()
            except Exception:
                pass


class VideoWriter(_Writer):
    def __init__(self, path, *, fps=None, width: int, height: int, crf: int = 18,
                 audio_from=None, codec: str = "libx264", time_base=None, odd_size: str = "yuv444p"):
        av = load_av()
        self.path = Path(path).expanduser()
        suffix = self.path.suffix.lower()
        parent = self._check_arguments(suffix, width, height, crf, odd_size)
        self.width, self.height = int(width), int(height)
        self.fps = _fraction(fps) or Fraction(25)
        self.time_base = _fraction(time_base) or 1 / self.fps
        self._step = max(1, round(1 / (self.fps * self.time_base)))
        self._fmt = FORMATS[suffix]
        self.audio_from, self._audio_start = self._probe_audio(audio_from)
        if self._fmt == "webm" and codec in ("libx264", "h264"):
            codec = "libvpx-vp9"
        self._choose_pixel_format(av, codec, odd_size)
        self._tmp = temp_name(parent, self.path.stem, suffix)
        self._tmp_mux: Path | None = None
        self._done = False
        self._last_pts: int | None = None
        self._origin: int | None = None  # source pts that becomes 0 in the output
        self.frames_written = 0
        try:
            self._container = av.open(str(self._tmp), mode="w", format=self._fmt)
            self._stream = self._add_stream(codec, crf)
        except Exception as exc:
            self.abort()
            raise RefcolorError(f"cannot create video {self.path}: {short_reason(exc)}") from exc

    def _check_arguments(self, suffix: str, width, height, crf, odd_size: str) -> Path:
        """One-line errors for a bad target or option; returns the target's folder."""
        if suffix not in FORMATS:
            raise RefcolorError(f"unsupported video suffix {self.path.suffix!r} (use {', '.join(VIDEO_SUFFIXES)})")
        parent = _check_target(self.path)
        if self.path.is_dir():
            raise RefcolorError(f"output path is a folder: {self.path}")
        if int(width) <= 0 or int(height) <= 0:
            raise RefcolorError(f"invalid output size {width}x{height}")
        if not 0 <= int(crf) <= 63:
            raise RefcolorError(f"crf must be within 0..63 (got {crf})")
        if odd_size not in ("yuv444p", "pad"):
            raise RefcolorError(f"odd_size must be 'yuv444p' or 'pad' (got {odd_size!r})")
        return parent

    def _choose_pixel_format(self, av, codec: str, odd_size: str) -> None:
        """yuv420p when the encoder has it; an odd side takes yuv444p (``odd_size="yuv444p"``, when
        the encoder has it) or a padded encoded size (``_enc_w``, ``_enc_h``)."""
        try:
            enc = av.codec.Codec(codec, "w")
        except Exception:
            raise RefcolorError(f"video encoder {codec!r} is not available in this PyAV build") from None
        formats = [f.name for f in (enc.video_formats or [])]
        self.pix_fmt = "yuv420p" if "yuv420p" in formats or not formats else formats[0]
        self._enc_w, self._enc_h = self.width, self.height
        if (self.width % 2 or self.height % 2) and self.pix_fmt.startswith(("yuv420", "yuv422")) \
                and not codec.startswith(("libvpx", "libaom")):
            if odd_size == "yuv444p" and "yuv444p" in formats:
                self.pix_fmt = "yuv444p"
            else:
                self._enc_w, self._enc_h = self.width + self.width % 2, self.height + self.height % 2

    def _add_stream(self, codec: str, crf: int):
        """The video stream of the open container: size, pixel format, BT.709 tags, encoder options."""
        s = self._container.add_stream(codec, rate=self.fps)
        s.width, s.height, s.pix_fmt = self._enc_w, self._enc_h, self.pix_fmt
        s.time_base = self.time_base
        s.codec_context.time_base = self.time_base
        cc = s.codec_context
        for attr in ("colorspace", "color_range", "color_primaries", "color_trc"):
            try:
                setattr(cc, attr, 1)  # BT.709 / limited (MPEG) range
            except Exception:
                pass
        opts = {"crf": str(int(crf))} if codec in _CRF_CODECS else {}
        if codec.startswith("libvpx"):
            opts.update({"b": "0", "row-mt": "1"})
        if self._fmt == "avi":
            opts["bf"] = "0"  # AVI has no pts: B-frames would shift the timestamps
        s.options = opts
        s.thread_type = "AUTO"
        return s

    @staticmethod
    def _probe_audio(audio_from) -> tuple[Path | None, float | None]:
        """(path, start time in seconds) of the audio source; path None when it has no audio."""
        if audio_from is None:
            return None, None
        av = load_av()
        p = Path(audio_from).expanduser()
        if not p.is_file():
            raise RefcolorError(f"audio source not found: {p}")
        try:
            with av.open(str(p)) as c:
                starts = [float(a.start_time * a.time_base) for a in c.streams.audio
                          if a.start_time is not None and a.time_base]
                return (p if len(c.streams.audio) else None), (min(starts) if starts else 0.0)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise RefcolorError(f"cannot read audio from {p}: {short_reason(exc)}") from exc

    def write(self, rgb: np.ndarray, pts: int | None = None) -> None:
        av = load_av()
        if self._done:
            raise RuntimeError("VideoWriter is closed")
        rgb = _as_rgb(rgb, self.width, self.height)
        if (self._enc_w, self._enc_h) != (self.width, self.height):
            rgb = np.pad(rgb, ((0, self._enc_h - self.height), (0, self._enc_w - self.width), (0, 0)), mode="edge")
        if self._origin is None:  # start the output at 0, keeping audio sync (like ffmpeg)
            origin = 0 if pts is None else int(pts)
            if self.audio_from is not None:
                origin = min(origin, int(self._audio_start / self.time_base))
            self._origin = max(origin, 0)
        if pts is None:
            pts = 0 if self._last_pts is None else self._last_pts + self._step
        else:
            pts = int(pts) - self._origin
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
            format=self.pix_fmt, dst_colorspace="ITU709", dst_color_range="MPEG")
        frame.pts, frame.time_base = pts, self.time_base
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except (av.error.FFmpegError, OSError) as exc:
            self.abort()
            raise RefcolorError(f"writing {self.path} failed: {short_reason(exc)}") from exc
        self._last_pts = pts
        self.frames_written += 1

    def close(self) -> None:
        if self._done:
            return
        av = load_av()
        if self.frames_written == 0:
            self.abort()
            raise RefcolorError(f"no frames were written to {self.path}")
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
            result = self._tmp
            if self.audio_from is not None:
                end = float((self._last_pts + self._step) * self.time_base)
                self._tmp_mux = result = temp_name(self._tmp.parent, self.path.stem, self.path.suffix.lower())
                mux_with_audio(self._tmp, self.audio_from, result, self._fmt, end,
                                float(self._origin * self.time_base))
            os.replace(result, self.path)
            self._done = True
            self._cleanup()
        except RefcolorError:
            self.abort()
            raise
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            self.abort()
            raise RefcolorError(f"finishing {self.path} failed: {short_reason(exc)}") from exc

    def abort(self) -> None:
        self._done = True
        try:
            self._container.close()
        except Exception:
            pass
        self._cleanup()

    def _cleanup(self) -> None:
        for p in (self._tmp, self._tmp_mux):
            if p is not None:
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass


class FrameFolderWriter(_Writer):
    """Writes ``000000.png``, ``000001.png``... into a temporary folder renamed onto ``path``.

    Accepts the :class:`VideoWriter` keywords; ``fps``/``crf``/``codec``/
    ``audio_from``/``time_base`` have no meaning for PNG frames and are ignored.
    The target must not exist, or be an empty folder; with ``replace=True`` a file or folder
    already there is replaced, but only once the new folder is complete.
    """

    def __init__(self, path, *, width: int, height: int, fps=None, crf=None, audio_from=None,
                 codec=None, time_base=None, replace: bool = False, **_ignored):
        self.path = Path(path).expanduser()
        parent = _check_target(self.path)
        if self.path.exists() and not replace and (not self.path.is_dir() or any(self.path.iterdir())):
            raise RefcolorError(f"output {self.path} already exists and is not an empty folder")
        self.replace = replace
        self.width, self.height = int(width), int(height)
        self._tmp = temp_name(parent, self.path.name, "")
        self._tmp.mkdir()  # default permissions (umask), unlike tempfile.mkdtemp
        self._done = False
        self.frames_written = 0

    def write(self, rgb: np.ndarray, pts: int | None = None) -> None:
        import cv2

        if self._done:
            raise RuntimeError("FrameFolderWriter is closed")
        rgb = _as_rgb(rgb, self.width, self.height)
        ok, buf = cv2.imencode(".png", rgb[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 3])
        try:
            if not ok:
                raise OSError("PNG encoding failed")
            (self._tmp / f"{self.frames_written:06d}.png").write_bytes(buf.tobytes())
        except OSError as exc:
            self.abort()
            raise RefcolorError(f"writing frames to {self.path} failed: {short_reason(exc)}") from exc
        self.frames_written += 1

    def close(self) -> None:
        if self._done:
            return
        if self.frames_written == 0:
            self.abort()
            raise RefcolorError(f"no frames were written to {self.path}")
        try:
            if self.replace and self.path.is_dir():
                shutil.rmtree(self.path)  # the old output, now that the new one is complete
            elif self.path.is_dir():
                self.path.rmdir()  # empty (checked at creation)
            elif self.replace and self.path.exists():
                self.path.unlink()
            os.replace(self._tmp, self.path)
        except OSError as exc:
            self.abort()
            raise RefcolorError(f"cannot create {self.path}: {short_reason(exc)}") from exc
        self._done = True

    def abort(self) -> None:
        self._done = True
        shutil.rmtree(self._tmp, ignore_errors=True)


def open_writer(path, **kw) -> VideoWriter | FrameFolderWriter:
    """A :class:`VideoWriter` for a video suffix (.mp4 .mov .mkv .avi .webm), else a frame folder."""
    if Path(path).suffix.lower() in VIDEO_SUFFIXES:
        return VideoWriter(path, **kw)
    return FrameFolderWriter(path, **kw)

