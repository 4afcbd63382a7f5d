"""A DCC tool script: creative driven from Blender (or any Python, with a
stand-in renderer when ``bpy`` is not there).

The host contributes its own step ("render this in the host": a Cycles frame
of a plane textured with the campaign's concept image) and a studio check as a
gate. Blender's API must be called on its main thread, so the run is started in
pump mode (``host_calls = "pump"``): the library queues the host step calls and
the events, and this script runs them from its own loop with ``run.pump``.

- In Blender's UI, ``start_in_ui()`` pumps from a ``bpy.app.timers`` function
  (``run.pump(0)`` each tick: what is queued, never blocking the UI).
- Headless (``blender -b``) timers never fire, so ``execute()`` pumps in a
  blocking loop with a small budget, updating a progress line between pumps.

Each delivered file is loaded into the scene (``bpy.data.images.load``) as soon
as its ``asset_written`` event says it is on disk, while later shots still run.
At the end the scene is saved as a .blend and reopened to check what it holds.

Run:
  blender -b --factory-startup --python-exit-code 1 --python blender_tool.py -- OUT_DIR
  CREATIVE_LIBRARY=path/to/libcreative_ffi.so python3 blender_tool.py OUT_DIR

In Blender, the script's own arguments are those after ``--`` (Blender's come
before it).
"""

import os
import struct
import sys
import tempfile
import threading
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import creative  # noqa: E402  (the one-file binding next to this script, or the installed wheel)

try:
    import bpy  # noqa: E402
except ImportError:
    bpy = None

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
# The stand-in renderer writes PPM, which Blender cannot load: deliver PNG.
convert_to = "image/png"
"""


def script_args(argv):
    """The script's own arguments: in Blender those after ``--``, else argv[1:]."""
    if "--" in argv:
        return argv[argv.index("--") + 1:]
    return [] if bpy is not None else argv[1:]


def png_size(data):
    """Width and height of a PNG from its IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return struct.unpack(">II", data[16:24])


class Renderer:
    """Renders previs frames in Blender: a plane textured with the concept image,
    seen by the default camera, one Cycles frame each."""

    def __init__(self, work_dir):
        self.work_dir = work_dir
        self.renders = 0
        self.threads = set()
        self.image = None
        if bpy is None:
            return
        scene = bpy.context.scene
        for name in ("Cube",):
            if name in bpy.data.objects:
                bpy.data.objects.remove(bpy.data.objects[name], do_unlink=True)
        mesh = bpy.data.meshes.new("previs_plane")
        mesh.from_pydata([(-1.6, -0.9, 0), (1.6, -0.9, 0), (1.6, 0.9, 0), (-1.6, 0.9, 0)], [], [(0, 1, 2, 3)])
        mesh.uv_layers.new(name="UVMap")
        for loop, uv in zip(mesh.uv_layers["UVMap"].data, [(0, 0), (1, 0), (1, 1), (0, 1)]):
            loop.uv = uv
        plane = bpy.data.objects.new("previs_plane", mesh)
        scene.collection.objects.link(plane)
        mat = bpy.data.materials.new("concept_material")
        mat.use_nodes = True
        nodes, links = mat.node_tree.nodes, mat.node_tree.links
        for n in list(nodes):
            nodes.remove(n)
        self.tex = nodes.new("ShaderNodeTexImage")
        emit = nodes.new("ShaderNodeEmission")
        out = nodes.new("ShaderNodeOutputMaterial")
        links.new(self.tex.outputs["Color"], emit.inputs["Color"])
        links.new(emit.outputs["Emission"], out.inputs["Surface"])
        mesh.materials.append(mat)
        cam = scene.camera
        cam.location = (0, 0, 4)
        cam.rotation_euler = (0, 0, 0)
        scene.render.engine = "CYCLES"
        scene.cycles.device = "CPU"
        scene.cycles.samples = 4
        # Debian's Blender is built without OpenImageDenoise.
        scene.cycles.use_denoising = False
        scene.render.resolution_percentage = 100
        scene.render.image_settings.file_format = "PNG"

    def render(self, call):
        """The host step: 'render' each concept frame in the host at the spec's resolution."""
        self.threads.add(threading.get_ident())
        ctx = call.context
        w, h = ctx["settings"]["resolution"]
        media, concept = call.inputs()[0]
        if call.cancelled:
            raise creative.CreativeError(creative.STATUS["CANCELLED"], "render cancelled")
        shot = ctx["job"]["vars"]["shot"]
        self.renders += 1
        if bpy is None:
            seed = zlib.crc32(concept) & 0xFFFFFF
            pixels = bytes(((seed >> 16) + x, (seed >> 8) + y, seed & 0xFF)[i % 3] & 0xFF
                           for y in range(h) for x in range(w) for i in range(3))
            call.add_output("image/x-portable-pixmap", b"P6\n%d %d\n255\n" % (w, h) + pixels,
                            meta={"extra": {"shot": shot}})
            return
        src = os.path.join(self.work_dir, "concept-%s.png" % shot)
        with open(src, "wb") as f:
            f.write(concept)
        img = bpy.data.images.load(src, check_existing=False)
        img.name = "concept-%s" % shot
        img.pack()  # the .blend keeps it after the temporary file is gone
        self.tex.image = img
        self.image = img
        scene = bpy.context.scene
        scene.render.resolution_x, scene.render.resolution_y = w, h
        scene.render.filepath = os.path.join(self.work_dir, "frame-%s.png" % shot)
        bpy.ops.render.render(write_still=True)
        with open(scene.render.filepath, "rb") as f:
            call.add_output("image/png", f.read(), meta={"extra": {"shot": shot}})


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


def load_image(path):
    """Load a delivered file into the host: bpy.data.images.load in Blender."""
    if bpy is not None:
        img = bpy.data.images.load(path, check_existing=True)
        img.use_fake_user = True  # kept in the .blend though nothing uses it yet
        px = img.pixels[:]
        colours = len(set(zip(px[0::4], px[1::4], px[2::4])))
        return (img.name, tuple(img.size), colours)
    with open(path, "rb") as f:
        return (os.path.basename(path), png_size(f.read()), None)


def execute(out_dir):
    """What the operator does; returns a result dict a UI would display."""
    run_dir = os.path.join(out_dir, "previs")
    work_dir = tempfile.mkdtemp(prefix="creative-previs-")
    renderer = Renderer(work_dir)
    seen, loaded, event_threads = [], {}, set()

    def on_event(event):
        # In pump mode this runs inside run.pump, on this (the main) thread.
        event_threads.add(threading.get_ident())
        seen.append(event)
        if event["type"] == "asset_written":
            loaded[event["path"]] = load_image(os.path.join(run_dir, event["path"]))

    with creative.Engine({"worker_threads": 2}) as eng:
        eng.register_step("blender_render", renderer.render)
        eng.register_gate("studio_aspect_check", studio_aspect_check)
        with eng.start(SPEC, {"out_dir": run_dir, "host_calls": "pump"}, on_event=on_event) as run:
            # The blocking pump loop of batch mode; in the UI, start_in_ui() below.
            while run.pump(0.05) == "running":
                p = run.progress
                sys.stdout.write("\r  previs: %d/%d shots" % (p["jobs_done"], p["jobs_total"]))
            print()
            arts = run.artifacts()
            report, manifest = run.report(), run.manifest()
            assert not run.callback_errors, run.callback_errors
            return {
                "state": run.state,
                "events": [e["type"] for e in seen],
                "frames": [a for a in arts if a.info["step"] == "previs"],
                "concepts": [a for a in arts if a.info["step"] == "concept"],
                "report": report,
                "manifest": manifest,
                "loaded": loaded,
                "renders": renderer.renders,
                "host_threads": renderer.threads | event_threads,
                "texture": renderer.image.name if renderer.image is not None else None,
            }


def start_in_ui(out_dir):
    """Blender's UI: pump from a timer instead of blocking (not used headless,
    where timers never fire)."""
    eng = creative.Engine()
    renderer = Renderer(tempfile.mkdtemp(prefix="creative-previs-"))
    eng.register_step("blender_render", renderer.render)
    eng.register_gate("studio_aspect_check", studio_aspect_check)
    run = eng.start(SPEC, {"out_dir": os.path.join(out_dir, "previs"), "host_calls": "pump"})

    def tick():
        if run.pump(0) == "running":
            return 0.05  # call again in 50 ms
        run.close()
        eng.close()
        return None

    bpy.app.timers.register(tick)


def save_and_reopen(out_dir, texture):
    """Save the scene as a .blend, open it again, and say what it holds."""
    path = os.path.join(os.path.abspath(out_dir), "previs.blend")
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.open_mainfile(filepath=path)
    plane = bpy.data.objects.get("previs_plane")
    mat = plane.data.materials[0] if plane is not None and plane.data.materials else None
    tex = [n.image.name for n in mat.node_tree.nodes if n.type == "TEX_IMAGE" and n.image] if mat else []
    return {"path": path, "images": sorted(i.name for i in bpy.data.images), "texture": tex}


def main():
    args = script_args(sys.argv)
    out_dir = os.path.abspath(args[0] if args else "creative-out")
    failures = []
    checks = [0]

    def check(cond, what):
        checks[0] += 1
        if not cond:
            failures.append(what)
            print("FAIL:", what)

    print("creative %s from %s%s" % (creative.version(), creative.library_path(),
                                     ", in Blender %s" % bpy.app.version_string if bpy else ""))
    r = execute(out_dir)
    check(r["state"] == "succeeded", "the campaign succeeded (%s)" % r["state"])
    check(len(r["frames"]) == 3 and r["renders"] == 3, "3 previs frames rendered in the host")
    check(len(r["concepts"]) == 3, "3 concept frames")
    check(r["host_threads"] == {threading.get_ident()}, "host steps and events ran on the main thread only")
    check(all(a.media_type == "image/png" and png_size(a.data) == (32, 18) for a in r["frames"]),
          "frames are PNGs of the spec's resolution")
    check(sorted(a.info["meta"]["extra"]["shot"] for a in r["frames"]) == ["sh010", "sh020", "sh030"],
          "each frame knows its shot")
    check(all(os.path.isabs(a.info["path"]) and a.info["path"].endswith(".png") for a in r["frames"]),
          "artifact paths are absolute and end in .png")
    check(r["events"][0] == "run_started" and r["events"][-1] == "run_finished", "events from start to finish")
    check(isinstance(r["report"], dict) and isinstance(r["manifest"], dict), "report and manifest are JSON")
    delivered = {a["path"] for a in r["manifest"]["assets"]}
    check(len(delivered) == 3 and set(r["loaded"]) == delivered,
          "every delivered file was loaded as its job ended (%s)" % sorted(r["loaded"]))
    check(all(size == (32, 18) for _, size, _ in r["loaded"].values()), "the loaded images are 32x18")
    if bpy is not None:
        colours = [n for _, _, n in r["loaded"].values()]
        check(all(n > 8 for n in colours), "the rendered frames show the texture, not a flat colour (%s)" % colours)
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

    if bpy is not None:
        saved = save_and_reopen(out_dir, r["texture"])
        check(os.path.isfile(saved["path"]), "the .blend was saved")
        check(r["texture"] in saved["texture"], "the reopened plane is textured with a concept image (%s)"
              % saved["texture"])
        frames = {os.path.basename(p) for p in delivered}
        check(frames <= set(saved["images"]), "the reopened .blend holds the loaded frames (%s)" % saved["images"])

    print("%d frames, %d events" % (len(r["frames"]), len(r["events"])))
    print("%d passed, %d failed" % (checks[0] - len(failures), len(failures)))
    return len(failures)


if __name__ == "__main__":
    failed = main()
    if failed:
        # Under `blender --python-exit-code 1`, an exception is what makes the
        # exit code; plain Python exits with the code.
        if bpy is not None:
            raise SystemExit("blender_tool: %d check(s) failed" % failed)
        sys.exit(1)
