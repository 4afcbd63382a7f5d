"""A DCC tool script, written the way a Blender operator or a Houdini shelf tool
would use creative (no Blender needed to run it).

In Blender, ``execute()`` below would be the body of an ``bpy.types.Operator``:
the host contributes its own step ("render this in the host": here a stand-in
that writes a small PPM frame where Blender would call ``bpy.ops.render``), and
a studio check as a gate; the campaign runs in the background while the UI
polls progress from a timer (``bpy.app.timers``); each delivered file is loaded
into the scene as soon as its ``asset_written`` event says it is on disk
(``bpy.data.images.load`` in Blender), while later shots are still running.
Events arrive on a library thread, so they are queued and drained on the main
thread, as Blender requires.

Run: CREATIVE_LIBRARY=path/to/libcreative_ffi.so python3 blender_tool.py OUT_DIR
"""

import os
import queue
import struct
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import creative  # noqa: E402  (the one-file binding next to this script)

SPEC = """
name = "shot-previs"
concurrency = 4

[providers.procedural]
kind = "procedural"

[matrix]
shot = ["sh010", "sh020", "sh030"]

[[steps]]
name = "concept"
kind = "generate"
providers = ["procedural"]
prompt = "concept frame for shot {{ shot }}, moody lighting"
size = "64x36"
gates = [{ kind = "studio_aspect_check" }]

[[steps]]
name = "previs"
kind = "blender_render"
inputs = ["concept"]
produces = "image"
resolution = [32, 18]
"""


def png_size(data):
    """Width and height of a PNG from its IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return struct.unpack(">II", data[16:24])


def blender_render(call):
    """The host step: 'render' each concept frame in the host at the spec's resolution."""
    ctx = call.context
    w, h = ctx["settings"]["resolution"]
    media, concept = call.inputs()[0]
    if call.cancelled:
        raise creative.CreativeError(creative.STATUS["CANCELLED"], "render cancelled")
    seed = zlib.crc32(concept) & 0xFFFFFF
    pixels = bytes(((seed >> 16) + x, (seed >> 8) + y, seed & 0xFF) [i % 3] & 0xFF
                   for y in range(h) for x in range(w) for i in range(3))
    frame = b"P6\n%d %d\n255\n" % (w, h) + pixels
    call.add_output("image/x-portable-pixmap", frame, meta={"width": w, "height": h,
                                                            "extra": {"shot": ctx["job"]["vars"]["shot"]}})


def studio_aspect_check(call):
    """The studio check: concept frames must be 16:9."""
    media, data = call.inputs()[0]
    size = png_size(data)
    if size is None:
        call.set_verdict(False, 0.0, "not a PNG")
        return
    w, h = size
    ratio = w / h
    call.set_verdict(abs(ratio - 16 / 9) < 0.02, ratio, None if abs(ratio - 16 / 9) < 0.02 else "not 16:9")


def execute(out_dir):
    """What the operator does; returns a result dict a UI would display."""
    events = queue.Queue()  # filled on a library thread, drained on the "main" thread
    run_dir = os.path.join(out_dir, "previs")
    loaded = {}  # path -> bytes: stands in for bpy.data.images.load(path)

    def handle(event):
        seen.append(event)
        if event["type"] == "asset_written":
            with open(os.path.join(run_dir, event["path"]), "rb") as f:
                loaded[event["path"]] = f.read()

    with creative.Engine({"worker_threads": 2}) as eng:
        eng.register_step("blender_render", blender_render)
        eng.register_gate("studio_aspect_check", studio_aspect_check)
        with eng.start(SPEC, {"out_dir": run_dir}, on_event=events.put) as run:
            # A timer-driven UI loop: poll, drain events, update the status bar.
            seen = []
            while run.state == "running":
                try:
                    while True:
                        handle(events.get_nowait())
                except queue.Empty:
                    pass
                p = run.progress
                sys.stdout.write("\r  previs: %d/%d shots" % (p["jobs_done"], p["jobs_total"]))
                time.sleep(0.02)
            run.wait()
            while not events.empty():
                handle(events.get_nowait())
            print()
            arts = run.artifacts()
            report = run.report()
            manifest = run.manifest()
            assert not run.callback_errors, run.callback_errors
            return {
                "state": run.state,
                "events": [e["type"] for e in seen],
                "frames": [a for a in arts if a.media_type == "image/x-portable-pixmap"],
                "concepts": [a for a in arts if a.media_type == "image/png"],
                "report": report,
                "manifest": manifest,
                "loaded": loaded,
            }


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "creative-out"
    failures = []
    checks = [0]

    def check(cond, what):
        checks[0] += 1
        if not cond:
            failures.append(what)
            print("FAIL:", what)

    r = execute(out_dir)
    check(r["state"] == "succeeded", "the campaign succeeded (%s)" % r["state"])
    check(len(r["frames"]) == 3, "3 previs frames rendered in the host")
    check(len(r["concepts"]) == 3, "3 concept frames")
    check(all(a.data.startswith(b"P6\n32 18\n") for a in r["frames"]), "frames have the spec's resolution")
    check(sorted(a.info["meta"]["extra"]["shot"] for a in r["frames"]) == ["sh010", "sh020", "sh030"],
          "each frame knows its shot")
    check(r["events"][0] == "run_started" and r["events"][-1] == "run_finished", "events from start to finish")
    check(isinstance(r["report"], dict) and isinstance(r["manifest"], dict), "report and manifest are JSON")
    delivered = {a["path"] for a in r["manifest"]["assets"]}
    check(len(delivered) == 3 and set(r["loaded"]) == delivered,
          "every delivered file was loaded as its job ended (%s)" % sorted(r["loaded"]))
    written = [i for i, e in enumerate(r["events"]) if e == "asset_written"]
    check(written and written[0] < r["events"].index("run_finished"), "files arrive before the run ends")

    # A broken spec is an exception with a status, never a crash of the DCC.
    with creative.Engine() as eng:
        try:
            eng.start("name = [")
            check(False, "a malformed spec raises")
        except creative.CreativeError as e:
            check(e.status == "PARSE", "malformed spec: PARSE (%s)" % e.status)
        # A host step that raises fails its step with the Python message kept.
        eng.register_step("blender_render", lambda call: 1 / 0)
        eng.register_gate("studio_aspect_check", studio_aspect_check)
        with eng.start(SPEC, {"out_dir": os.path.join(out_dir, "broken")}) as run:
            check(run.wait() == "failed", "a raising host step fails the run")
            try:
                run.manifest()
            except creative.CreativeError as e:
                check(False, "manifest of a failed run is readable (%s)" % e)

    print("%d frames, %d events" % (len(r["frames"]), len(r["events"])))
    print("%d passed, %d failed" % (checks[0] - len(failures), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
