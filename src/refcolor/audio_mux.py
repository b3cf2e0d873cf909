"""Carry a source's audio into an encoded video: copy the packets where the container takes the
codec in a widely playable way, else re-encode (AAC; Opus for webm); interleave by time; shift by
the video's origin and cut at its end (as ``ffmpeg -shortest``). Used by ``video_write`` (its writer
and ``video_join.join_videos``, which joins ``resume``'s segments).
"""
from __future__ import annotations

import heapq
from pathlib import Path

from .video import load_av

_COMMON_AUDIO = {"aac", "mp3", "mp2", "ac3", "eac3"}
_COPYABLE = {
    "mp4": _COMMON_AUDIO | {"alac", "opus", "flac"},
    "mov": _COMMON_AUDIO | {"alac"},  # plus any pcm_*
    "matroska": None,  # anything the muxer supports
    "webm": {"opus", "vorbis"},
    "avi": {"mp3", "mp2", "ac3", "aac", "pcm_s16le", "pcm_u8"},
}


def _can_copy(codec: str, fmt: str, out) -> bool:
    allowed = _COPYABLE.get(fmt)
    if allowed is not None and codec not in allowed and not (fmt == "mov" and codec.startswith("pcm_")):
        return False
    supported = getattr(out, "supported_codecs", None)
    return supported is None or codec in supported


def _timed(packets, tag: int):
    """(seconds, tag, seq, packet) for real packets, with a non-decreasing time key."""
    last = float("-inf")
    for seq, p in enumerate(packets):
        ts = p.dts if p.dts is not None else p.pts
        if p.size == 0 and ts is None:
            continue
        if ts is not None and p.time_base is not None:
            last = max(last, float(ts * p.time_base))
        yield last, tag, seq, p


def mux_with_audio(video_path: Path, audio_path: Path, out_path: Path, fmt: str, end: float,
                   origin: float) -> None:
    """Remux the encoded video with every audio stream of ``audio_path`` into ``out_path``.

    Audio is shifted by ``-origin`` seconds (the shift applied to the video) and
    cut at ``end`` seconds (output time).
    """
    av = load_av()
    with av.open(str(video_path)) as vin, av.open(str(audio_path)) as ain, \
            av.open(str(out_path), mode="w", format=fmt) as out:
        vs = vin.streams.video[0]
        vout = out.add_stream_from_template(vs)
        plans = _plan_audio(ain, out, fmt)
        audio_in = [a for a in ain.streams.audio if a.index in plans]
        merged = heapq.merge(_timed(vin.demux(vs), 0), _timed(ain.demux(*audio_in), 1) if audio_in else iter(()))
        for t, tag, _, packet in merged:
            if tag == 0:
                packet.stream = vout
                out.mux(packet)
            elif t - origin < end or not packet.size:  # audio beyond the end of the video is dropped
                _mux_audio(av, out, packet, plans[packet.stream.index], origin)
        for a in audio_in:
            o, reencode = plans[a.index]
            if reencode:
                for frame in a.codec_context.decode(None):
                    out.mux(o.encode(frame))
                out.mux(o.encode(None))


def _plan_audio(ain, out, fmt: str) -> dict:
    """Input audio stream index -> (output stream, re-encode?): copied where ``_can_copy``, else
    AAC (Opus for webm) at the input's rate and layout (at most 8 channels, else stereo)."""
    plans = {}
    for a in ain.streams.audio:
        name = a.codec_context.name if a.codec_context is not None else ""
        if not name:
            continue
        if _can_copy(name, fmt, out):
            plans[a.index] = (out.add_stream_from_template(a), False)
            continue
        enc = "libopus" if fmt == "webm" else "aac"
        rate = a.codec_context.sample_rate or 48000
        if enc == "libopus" and rate not in (8000, 12000, 16000, 24000, 48000):
            rate = 48000
        o = out.add_stream(enc, rate=rate)
        layout = a.codec_context.layout
        o.codec_context.layout = layout if layout.nb_channels <= 8 else "stereo"
        o.bit_rate = 128000 * min(2, layout.nb_channels or 2)
        plans[a.index] = (o, True)
    return plans


def _mux_audio(av, out, packet, plan: tuple, origin: float) -> None:
    """One audio packet shifted by ``-origin`` seconds, copied or decoded and re-encoded."""
    o, reencode = plan
    if origin and packet.time_base:
        shift = round(origin / packet.time_base)
        if packet.pts is not None:
            packet.pts -= shift
        if packet.dts is not None:
            packet.dts -= shift
    if not reencode:
        packet.stream = o
        out.mux(packet)
        return
    try:
        frames = packet.decode()
    except av.error.FFmpegError:
        return  # a broken audio packet is dropped, not fatal
    for frame in frames:
        out.mux(o.encode(frame))
