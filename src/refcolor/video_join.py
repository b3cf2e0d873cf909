"""Joining encoded segments (``resume``'s) into one video without re-encoding: each segment put
back at its source time, the decoding times Matroska leaves out restored, the source's audio added
(``audio_mux``), written under a temporary name and renamed onto the output."""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

from .audio_mux import mux_with_audio
from .errors import RefcolorError
from .video import load_av
from .video_write import FORMATS, temp_name


def _with_decode_times(packets, step: int):
    """``packets`` (decoding order) with every dts set. Matroska stores no decoding times, so its
    demuxer leaves them out on a file's first packets (within the B-frame delay); a second segment's
    such packets would get FFmpeg's guess from the first segment's times, which goes backwards (the
    join failed with EINVAL). Each gets the next known dts less the durations of the packets up to
    it (with none known: the first pts less them): FFmpeg's own guess at the start of a file."""
    pending = []
    for packet in packets:
        if packet.dts is None and packet.pts is None:
            continue  # the demuxer's empty flush packet
        if packet.dts is None and packet.pts is not None:
            pending.append(packet)
            continue
        yield from _count_back(pending, packet.dts, step)
        pending = []
        yield packet
    if pending:
        yield from _count_back(pending, min(p.pts for p in pending), step)


def _count_back(pending: list, base: int, step: int):
    for i, packet in enumerate(pending):
        packet.dts = base - sum(p.duration or step for p in pending[i:])
        yield packet


def join_videos(parts: list[tuple[Path, object, object]], output: Path, audio_from: Path | None) -> None:
    """Joins the video packets of ``parts`` (no re-encoding) into ``output``, adds the audio of
    ``audio_from``, renames onto ``output``. A part is (file, first_pts, time_base): the source time
    of its first frame (None: right after the previous part), which each file was written from 0 on."""
    av = load_av()
    fmt = FORMATS[output.suffix.lower()]
    video_tmp = temp_name(output.parent, output.stem, output.suffix.lower())
    final_tmp = None
    try:
        origin = None
        end = 0.0
        with av.open(str(video_tmp), "w", format=fmt) as out:
            stream = None
            for file, first_pts, time_base in parts:
                with av.open(str(file)) as src:
                    vin = src.streams.video[0]
                    if stream is None:
                        stream = out.add_stream_from_template(vin)
                    first = Fraction(first_pts) * Fraction(time_base) if first_pts is not None else None
                    if origin is None:
                        origin = first or Fraction(0)
                    # The writer started each segment at 0; put it back at its source time.
                    shift = (first - origin) if first is not None else Fraction(end)
                    rate = vin.average_rate or vin.guessed_rate
                    step = max(1, int(round(1 / (rate * vin.time_base)))) if rate and vin.time_base else 1
                    for packet in _with_decode_times(src.demux(vin), step):
                        tb = packet.time_base
                        offset = int(round(shift / tb))
                        if packet.pts is not None:
                            packet.pts += offset
                            end = max(end, float((packet.pts + (packet.duration or 0)) * tb))
                        if packet.dts is not None:
                            packet.dts += offset
                        packet.stream = stream
                        out.mux(packet)
        result = video_tmp
        if audio_from is not None:
            final_tmp = temp_name(output.parent, output.stem, output.suffix.lower())
            mux_with_audio(video_tmp, audio_from, final_tmp, fmt, end, float(origin or 0))
            result = final_tmp
        os.replace(result, output)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise RefcolorError(f"joining the segments of {output} failed: {str(exc).splitlines()[0]}") from exc
    finally:
        for p in (video_tmp, final_tmp):
            if p is not None and p.exists():
                p.unlink()
