"""The binding's library loading: once a library is loaded, another path is
refused (naming both), the same path is accepted, and it says which it loaded;
another copy of the binding (a second add-on's) uses the same library or is
refused another; a library of another version or ABI is refused at load, and
the wheel's package layout refuses it at import.

    CREATIVE_LIBRARY=... CREATIVE_BINDING_DIR=... python3 loading.py SCRATCH
"""

import importlib.util
import os
import shutil
import subprocess
import sys

BINDING_DIR = os.environ["CREATIVE_BINDING_DIR"]
sys.path.insert(0, BINDING_DIR)
import creative  # noqa: E402

checks = 0
failures = []


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def binding_copy(scratch, name, replace=None):
    """Another copy of the binding, as a second add-on would ship it (its own
    module name), optionally with one line changed."""
    with open(os.path.join(BINDING_DIR, "creative.py"), encoding="utf-8") as f:
        text = f.read()
    if replace:
        old, new = replace
        assert old in text, old
        text = text.replace(old, new)
    path = os.path.join(scratch, name + ".py")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def raises(fn, *needles):
    try:
        fn()
    except OSError as e:
        return all(n in str(e) for n in needles), str(e)
    return False, "no error"


scratch = sys.argv[1]
lib = os.environ["CREATIVE_LIBRARY"]
# A second file with the same contents: another add-on's bundled library.
other_dir = os.path.join(scratch, "other")
os.makedirs(other_dir, exist_ok=True)
other = os.path.join(other_dir, "libcreative_ffi.so")
shutil.copyfile(lib, other)

check(creative.library_path() is None, "nothing is loaded before the first use")
with creative.Engine() as eng:
    check(os.path.samefile(creative.library_path(), lib), "it says which library it loaded")
    check("procedural" in eng.kinds()["providers"], "the loaded library works")
ok, msg = raises(lambda: creative.Engine(library="no/such/libcreative_ffi.so"), lib, "no/such")
check(ok, "a second, different library is refused, naming both (%s)" % msg)
ok, msg = raises(lambda: creative.Engine(library=other), lib, other)
check(ok, "a copy of the library at another path is refused too (%s)" % msg)
with creative.Engine(library=lib):
    pass
check(creative.version() == creative.__version__, "library and binding versions match")

# A second add-on's copy of the binding shares the process's library, which it
# finds without being told where (no CREATIVE_LIBRARY from here on).
del os.environ["CREATIVE_LIBRARY"]
addon = binding_copy(scratch, "addon_b_creative")
check(addon.library_path() is None, "the other copy has loaded nothing yet")
try:
    with addon.Engine() as eng:
        check(os.path.samefile(addon.library_path(), lib), "the other copy uses the library already loaded")
        check("procedural" in eng.kinds()["providers"], "and it works through the other copy")
except OSError as e:
    check(False, "the other copy finds the library already loaded (%s)" % e)
addon2 = binding_copy(scratch, "addon_c_creative")
ok, msg = raises(lambda: addon2.load(other), lib, other)
check(ok, "another copy asking for another file is refused, naming both (%s)" % msg)

# Version and ABI are checked at load.
newer = binding_copy(scratch, "addon_newer", ('__version__ = "', '__version__ = "9.9.'))
ok, msg = raises(newer.load, "is version " + creative.__version__, "this binding is 9.9.")
check(ok, "a library of another version is refused (%s)" % msg)
abi = binding_copy(scratch, "addon_abi", ("ABI_VERSION = %d" % creative.ABI_VERSION,
                                          "ABI_VERSION = %d" % (creative.ABI_VERSION + 1)))
ok, msg = raises(lambda: abi.load(lib), "has ABI %d" % creative.ABI_VERSION, "needs %d" % (creative.ABI_VERSION + 1))
check(ok, "a library of another ABI version is refused (%s)" % msg)

# The wheel's layout (package `creative`, its library beside it) checks at import.
pkg = os.path.join(scratch, "site", "creative")
os.makedirs(pkg, exist_ok=True)
with open(os.path.join(BINDING_DIR, "creative.py"), encoding="utf-8") as f:
    text = f.read().replace('__version__ = "', '__version__ = "9.9.', 1)
with open(os.path.join(pkg, "__init__.py"), "w", encoding="utf-8") as f:
    f.write(text)
os.replace(other, os.path.join(pkg, "libcreative_ffi.so"))
env = {k: v for k, v in os.environ.items() if k not in ("CREATIVE_LIBRARY", "PYTHONPATH")}
p = subprocess.run([sys.executable, "-c", "import creative"], cwd=os.path.dirname(pkg), env=env,
                   capture_output=True, text=True)
check(p.returncode != 0 and "this binding is 9.9." in p.stderr,
      "a mismatched install fails at import (exit %d: %s)" % (p.returncode, p.stderr.strip()[-300:]))

print("%d passed, %d failed" % (checks - len(failures), len(failures)))
sys.exit(1 if failures else 0)
