"""Run from a fresh venv with the creative wheel installed (and no
CREATIVE_LIBRARY): the package imports, loaded its own library at import, and
runs a campaign with a Python host step.

    VENV/bin/python wheel_smoke.py OUT_DIR
"""

import os
import sys

import creative

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


here = os.path.dirname(os.path.abspath(creative.__file__))
check(creative.library_path() is not None, "the library was loaded at import")
check(os.path.dirname(creative.library_path()) == here,
      "the library is the wheel's own (%s)" % creative.library_path())
check(creative.version() == creative.__version__, "library and binding versions match")

SPEC = """
name = "wheel"
[providers.procedural]
kind = "procedural"
[matrix]
shot = ["a", "b"]
[[steps]]
name = "concept"
kind = "generate"
providers = ["procedural"]
prompt = "frame {{ shot }}"
size = "16x16"
[[steps]]
name = "host"
kind = "py_step"
inputs = ["concept"]
produces = "image"
"""

with creative.Engine() as eng:
    eng.register_step("py_step", lambda call: call.add_output("image/png", call.inputs()[0][1]))
    with eng.start(SPEC, {"out_dir": sys.argv[1]}) as run:
        check(run.wait(60) == "succeeded", "the campaign succeeded (%s)" % run.state)
        check(len(run.artifacts()) == 4, "2 concepts and 2 host outputs")
print("%d passed, %d failed" % (5 - len(failures), len(failures)))
sys.exit(1 if failures else 0)
