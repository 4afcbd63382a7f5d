"""The binding's library loading: once a library is loaded, another path is
refused (naming both), the same path is accepted, and it says which it loaded.

    CREATIVE_LIBRARY=... python3 loading.py
"""

import os
import sys

sys.path.insert(0, os.environ["CREATIVE_BINDING_DIR"])
import creative  # noqa: E402

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


lib = os.environ["CREATIVE_LIBRARY"]
check(creative.library_path() is None, "nothing is loaded before the first use")
with creative.Engine() as eng:
    check(os.path.samefile(creative.library_path(), lib), "it says which library it loaded")
    check("procedural" in eng.kinds()["providers"], "the loaded library works")
try:
    creative.Engine(library="no/such/libcreative_ffi.so")
    check(False, "a second, different library is refused")
except OSError as e:
    check(lib in str(e) and "no/such" in str(e), "the refusal names both libraries (%s)" % e)
with creative.Engine(library=lib):
    pass
check(creative.version() == creative.__version__, "library and binding versions match")
print("%d passed, %d failed" % (6 - len(failures), len(failures)))
sys.exit(1 if failures else 0)
