"""Frame sources: videos (PyAV), folders of frames and single images.

``open_source(path)`` returns a lazy, re-iterable :class:`FrameSource` that
yields upright ``H x W x 3`` uint8 RGB :class:`Frame` objects one at a time.
A video is never held in memory as a whole.

Decisions (see also ``video_write.py``):

* Rotation: the display matrix (``frame.rotation`` in PyAV >= 13, else the
  frame's DISPLAYMATRIX side data, else the legacy ``rotate`` tag) is applied
  to the pixels; ``VideoInfo.rotation`` is the *clockwise* angle in
  {0, 90, 180, 270} that was applied (the legacy ``rotate`` tag convention,
  e.g. 90 for a portrait phone video).  Flips in the matrix and non-square
  pixels (sample aspect ratio) are ignored.
* Colour: ``frame.to_ndarray(format="rgb24")`` converts with the frame's own
  colorspace and range tags (limited/full range, BT.601/709), any bit depth.
* Corrupt data: a decoder error in the middle of a video (e.g. a truncated
  file whose index is intact) raises :class:`RefcolorError` rather than
  silently producing a shorter output.
* Folders: files with an image suffix, hidden files ignored, natural sort
  (``2.png`` < ``10.png``).  Every header is checked up front so a frame of a
  different size fails before any work is done.  16-bit samples are rounded
  to 8 bits (``x / 257``); alpha is dropped; EXIF orientation is applied.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import RefcolorError
from .samples import uint16_to_uint8

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")


@dataclass
class VideoInfo:
    width: int  # display size, after rotation
    height: int
    num_frames: int | None  # exact for folders/images, else the container's count/estimate
    fps: Fraction | None  # average frame rate; None for folders/images
    time_base: Fraction | None
    duration: float | None  # seconds
    has_audio: bool
    rotation: int  # clockwise degrees applied to make frames upright
    kind: str  # "video" | "folder" | "image"


@dataclass
class Frame:
    rgb: np.ndarray  # H x W x 3 uint8 RGB, upright
    pts: int | None  # in info.time_base (videos), else None
    index: int


def load_av():
    try:
        import av
    except ImportError as exc:  # pragma: no cover - environment problem
        raise RefcolorError(f"PyAV is required to read videos ({exc})") from exc
    return av


def short_reason(exc: BaseException) -> str:
    reason = getattr(exc, "strerror", None)
    if type(exc).__module__ == "av.error" and reason:
        # PyAV: "[Errno 1094995529] Invalid data found when processing input: 'x.mp4'" -> the reason alone
        return reason[:1].lower() + reason[1:]
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


class FrameSource:
    """Iterable of :class:`Frame`; also a context manager.  ``info`` describes it."""

    info: VideoInfo

    def __iter__(self) -> Iterator[Frame]:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ----------------------------------------------------------------------------- images


def natural_key(name: str):
    """Sort key that orders digit runs by value: frame2.png before frame10.png."""
    return tuple(int(t) if i % 2 else t for i, t in enumerate(re.split(r"(\d+)", name.lower())))


def _to_rgb8(img: np.ndarray, path: Path) -> np.ndarray:
    """OpenCV decode result (gray/BGR/BGRA, 8/16-bit/float) -> H x W x 3 uint8 RGB."""
    if img.dtype == np.uint16:
        img = uint16_to_uint8(img)
    elif img.dtype.kind == "f":
        img = np.round(np.clip(np.nan_to_num(img), 0.0, 1.0) * 255.0).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise RefcolorError(f"unsupported sample type {img.dtype} in image: {path}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[:, :, None], 3, axis=2))
    if img.ndim == 3 and img.shape[2] in (3, 4):
        return np.ascontiguousarray(img[:, :, 2::-1])  # BGR(A) -> RGB, alpha dropped
    raise RefcolorError(f"unsupported image layout {img.shape}: {path}")


def read_image(path: str | Path) -> np.ndarray:
    """Decode one image file to H x W x 3 uint8 RGB (EXIF orientation applied)."""
    import cv2

    path = Path(path)
    try:
        buf = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise RefcolorError(f"cannot read image {path}: {short_reason(exc)}") from exc
    img = cv2.imdecode(buf, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR) if buf.size else None
    if img is None:
        raise RefcolorError(f"not a readable image (corrupt or unsupported): {path}")
    return _to_rgb8(img, path)


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) after EXIF orientation, from the header only when possible."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
            try:
                if im.getexif().get(0x0112) in (5, 6, 7, 8):
                    w, h = h, w
            except Exception:  # broken EXIF: keep the raw size
                pass
            return w, h
    except Exception:  # PIL cannot parse it; OpenCV may still decode it
        rgb = read_image(path)
        return rgb.shape[1], rgb.shape[0]


class ImageSequenceSource(FrameSource):
    """Frames from an ordered list of image files (a folder, or one image)."""

    def __init__(self, files: list[Path], kind: str):
        self.files = files
        w, h = _image_size(files[0])
        for f in files[1:]:
            if _image_size(f) != (w, h):
                fw, fh = _image_size(f)
                raise RefcolorError(
                    f"frame {f} is {fw}x{fh} but {files[0].name} is {w}x{h}; all frames must have the same size"
                )
        self.info = VideoInfo(w, h, len(files), None, None, None, False, 0, kind)

    def __iter__(self) -> Iterator[Frame]:
        w, h = self.info.width, self.info.height
        for i, f in enumerate(self.files):
            rgb = read_image(f)
            if rgb.shape[:2] != (h, w):
                raise RefcolorError(
                    f"frame {f} is {rgb.shape[1]}x{rgb.shape[0]} but the others are {w}x{h}"
                )
            yield Frame(rgb, None, i)


def list_frame_files(folder: Path) -> list[Path]:
    files = [
        p for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    ]
    return sorted(files, key=lambda p: natural_key(p.name))


# ----------------------------------------------------------------------------- video


def rotation_ccw(frame, stream) -> int:
    """Counter-clockwise display rotation of a decoded frame, as FFmpeg reports it."""
    rot = getattr(frame, "rotation", None)
    if rot is None:  # older PyAV: parse the DISPLAYMATRIX side data ourselves
        try:
            for sd in frame.side_data:
                if "DISPLAYMATRIX" in str(getattr(sd, "type", "")).upper():
                    m = np.frombuffer(memoryview(sd).tobytes()[:36], dtype=np.int32)
                    rot = -math.degrees(math.atan2(float(m[1]), float(m[0])))
        except Exception:
            rot = None
    if rot is None:
        try:
            rot = -float(stream.metadata.get("rotate", 0))
        except (TypeError, ValueError):
            rot = 0
    if rot is None or not math.isfinite(rot):
        return 0
    return int(round(rot / 90.0)) * 90 % 360


def pick_video_stream(container):
    av = load_av()
    pic = getattr(getattr(av.stream, "Disposition", None), "attached_pic", None)
    for s in container.streams.video:
        disp = getattr(s, "disposition", None)
        if pic is not None and disp is not None and int(disp) & int(pic):
            continue  # cover art, not a video
        return s
    return None


def upright_rgb(vf, k: int) -> np.ndarray:
    """A decoded PyAV frame as H x W x 3 uint8 RGB, turned ``k`` quarter turns counter-clockwise
    (``k = rotation_ccw(frame, stream) // 90``): the one conversion every video reader uses."""
    rgb = vf.to_ndarray(format="rgb24")
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


def seek_frames(path: Path, wanted: list[int], fps) -> list[tuple[int, np.ndarray]]:
    """(index, upright RGB) of each wanted frame: a key-frame seek then decoding forward to the
    frame's time (constant frame rate ``fps``); used by the app's preview of long videos."""
    av = load_av()
    frames = []
    with av.open(str(path)) as container:
        stream = pick_video_stream(container)
        tb, fps = stream.time_base, float(fps)
        start = stream.start_time or 0
        for index in wanted:
            target = start + int(round(index / fps / tb))
            container.seek(target, stream=stream, backward=True, any_frame=False)
            for vf in container.decode(stream):
                if vf.pts is None or vf.pts + 0.5 / fps / tb < target:
                    continue
                frames.append((index, upright_rgb(vf, rotation_ccw(vf, stream) // 90)))
                break
    return frames


def open_video_stream(path: Path):
    """(container, its video stream, threaded decoding): ``open_source``'s decoder and training's
    random access to videos both open files here, with the same one-line error. The
    stream is the one ``open_source`` decodes (cover art skipped); decoded frames are turned upright
    with ``upright_rgb(frame, rotation_ccw(frame, stream) // 90)``. The caller closes the container."""
    av = load_av()
    try:
        container = av.open(str(path), mode="r")
    except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise RefcolorError(f"not a readable video (not a video, or corrupt): {path}: {short_reason(exc)}") from exc
    stream = pick_video_stream(container)
    if stream is None:
        container.close()
        raise RefcolorError(f"{path} has no video stream")
    stream.thread_type = "AUTO"
    return container, stream


class VideoFileSource(FrameSource):
    """Lazily decoded video file.  Iterating twice re-opens the file."""

    def __init__(self, path: Path):
        self.path = path
        self._open_containers: list = []
        self._pending = None
        self._rotation_cw = 0
        container, stream = self._open()
        gen = self._frames(container, stream)
        try:
            first = next(gen)
        except StopIteration:
            raise RefcolorError(f"no video frame could be decoded from {path}") from None
        self._pending = (first, gen)
        h, w = first.rgb.shape[:2]
        fps = stream.average_rate or getattr(stream, "guessed_rate", None) or None
        fps = Fraction(fps) if fps else None
        tb = Fraction(stream.time_base) if stream.time_base else None
        duration = None
        if stream.duration and tb:
            duration = float(stream.duration * tb)
        elif container.duration:
            duration = container.duration / 1_000_000
        num = stream.frames or None
        if not num:  # Matroska statistics tags (mkvmerge), else an estimate from the duration
            tags = [v for k, v in stream.metadata.items() if k.upper().startswith("NUMBER_OF_FRAMES")]
            num = int(tags[0]) if tags and str(tags[0]).isdigit() else None
        if not num and duration and fps:
            num = max(1, int(round(duration * fps)))
        has_audio = len(container.streams.audio) > 0
        self.info = VideoInfo(w, h, num, fps, tb, duration, has_audio, self._rotation_cw, "video")

    def _open(self):
        container, stream = open_video_stream(self.path)
        self._open_containers.append(container)
        return container, stream

    def _frames(self, container, stream) -> Iterator[Frame]:
        av = load_av()
        index, k = 0, None
        try:
            packets = container.demux(stream)
            while True:
                try:
                    packet = next(packets)
                    decoded = packet.decode()
                except StopIteration:
                    break
                except (av.error.FFmpegError, OSError, ValueError) as exc:
                    raise RefcolorError(
                        f"{self.path}: corrupt or truncated video data (near frame {index}): {short_reason(exc)}"
                    ) from exc
                for vf in decoded:
                    if k is None:
                        ccw = rotation_ccw(vf, stream)
                        k = ccw // 90
                        self._rotation_cw = (360 - ccw) % 360
                    yield Frame(upright_rgb(vf, k), vf.pts, index)
                    index += 1
        finally:
            container.close()
            if container in self._open_containers:
                self._open_containers.remove(container)

    def __iter__(self) -> Iterator[Frame]:
        if self._pending is not None:
            first, gen = self._pending
            self._pending = None
            yield first
            yield from gen
        else:
            yield from self._frames(*self._open())

    def close(self) -> None:
        if self._pending is not None:
            self._pending[1].close()
            self._pending = None
        for c in list(self._open_containers):
            c.close()
        self._open_containers.clear()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def open_source(path: str | Path) -> FrameSource:
    """Open a video file, a folder of frames or a single image as a :class:`FrameSource`."""
    path = Path(path).expanduser()
    if not path.exists():
        raise RefcolorError(f"input not found: {path}")
    if path.is_dir():
        try:
            files = list_frame_files(path)
        except OSError as exc:
            raise RefcolorError(f"cannot list folder {path}: {short_reason(exc)}") from exc
        if not files:
            raise RefcolorError(
                f"folder {path} contains no image files ({', '.join(IMAGE_SUFFIXES)})"
            )
        return ImageSequenceSource(files, "folder")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        read_image(path)  # fail now on a corrupt image, not mid-run
        return ImageSequenceSource([path], "image")
    return VideoFileSource(path)
