"""A Python host that exits while runs are in flight: host steps running and
queued on library threads, event callbacks being delivered, and a pump-mode
run with calls queued. It must exit 0.

    python3 exit_in_flight.py OUT_DIR [hook|nohook]

``nohook`` removes the binding's exit hook, so the interpreter's finalization
ends the library threads that call into Python (by a forced unwind) and the
library has to let that pass.
"""

import atexit
import os
import sys
import threading
import time

sys.path.insert(0, os.environ["CREATIVE_BINDING_DIR"])
import creative  # noqa: E402

SPEC = """
name = "exit"
concurrency = 4
[providers.procedural]
kind = "procedural"
[matrix]
shot = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p"]
[[steps]]
name = "concept"
kind = "generate"
providers = ["procedural"]
prompt = "frame {{ shot }}"
size = "16x16"
[[steps]]
name = "slow"
kind = "slow_step"
inputs = ["concept"]
produces = "image"
"""

out_dir, mode = sys.argv[1], sys.argv[2]
if mode == "nohook":
    atexit.unregister(creative._at_exit)

in_step = threading.Event()


def slow(call):
    in_step.set()
    time.sleep(0.2)  # a host render that takes a while
    call.add_output("image/png", call.inputs()[0][1])


def on_event(event):
    time.sleep(0.02)  # a UI update that takes a while


eng = creative.Engine()
eng.register_step("slow_step", slow)
threaded = eng.start(SPEC, {"out_dir": os.path.join(out_dir, "threads")}, on_event=on_event)
pumped = eng.start(SPEC, {"out_dir": os.path.join(out_dir, "pump"), "host_calls": "pump"}, on_event=on_event)
# Exit only once a host step is really running on a library thread.
if not in_step.wait(60):
    sys.exit("no host step started within 60 s")
pumped.pump(0)
print("exiting with runs in flight:", threaded.state, pumped.state, flush=True)
