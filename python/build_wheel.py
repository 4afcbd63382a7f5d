"""Build the ``creative`` wheel: the ctypes binding (examples/python/creative.py,
as the package ``creative``) with the C library it loads, installed beside it.

    cargo build --release -p creative-ffi
    python3 python/build_wheel.py target/release/libcreative_ffi.so dist/

Only the standard library is needed (a wheel is a zip with a fixed layout,
PEP 427). The library is stripped of its debug info when ``strip`` is
available (pass --keep-debug to keep it). The wheel is tagged for this
platform and any Python 3: the binding is pure Python, the library is not.
Install it into any Python 3.8+ (a venv, or a DCC's own interpreter):

    python3 -m pip install dist/creative-0.1.0-py3-none-linux_x86_64.whl
    python3 -c "import creative; print(creative.version(), creative.library_path())"

At import the package loads its own library and checks that its ABI version
and version are the binding's.
"""

import argparse
import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BINDING = os.path.join(REPO, "examples", "python", "creative.py")


def binding_version():
    with open(BINDING, encoding="utf-8") as f:
        m = re.search(r'^__version__ = "([^"]+)"', f.read(), re.M)
    if not m:
        sys.exit("build_wheel: no __version__ in %s" % BINDING)
    return m.group(1)


def crate_version():
    with open(os.path.join(REPO, "Cargo.toml"), encoding="utf-8") as f:
        m = re.search(r'^\[workspace\.package\][^\[]*?^version = "([^"]+)"', f.read(), re.M | re.S)
    return m.group(1) if m else None


def platform_tag():
    return re.sub(r"[^A-Za-z0-9]", "_", sysconfig.get_platform())


def record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")
    return "%s,sha256=%s,%d" % (name, digest, len(data))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("library", help="libcreative_ffi.so / .dylib / creative_ffi.dll to ship")
    ap.add_argument("out_dir", help="folder the wheel is written to")
    ap.add_argument("--keep-debug", action="store_true", help="do not strip the library's debug info")
    args = ap.parse_args()

    version = binding_version()
    crate = crate_version()
    if crate and crate != version:
        sys.exit("build_wheel: the binding is %s but the crates are %s; bump __version__ in %s"
                 % (version, crate, BINDING))
    if not os.path.isfile(args.library):
        sys.exit("build_wheel: no library at %s (cargo build --release -p creative-ffi)" % args.library)
    lib_name = os.path.basename(args.library)

    with tempfile.TemporaryDirectory() as tmp:
        lib = os.path.join(tmp, lib_name)
        shutil.copyfile(args.library, lib)
        if not args.keep_debug and shutil.which("strip") and not lib_name.endswith(".dll"):
            subprocess.run(["strip", "--strip-debug", lib], check=True)
        with open(lib, "rb") as f:
            lib_bytes = f.read()

    with open(BINDING, "rb") as f:
        init = f.read()
    dist = "creative-%s.dist-info" % version
    tag = "py3-none-%s" % platform_tag()
    metadata = (
        "Metadata-Version: 2.1\n"
        "Name: creative\n"
        "Version: %s\n"
        "Summary: Generative-AI production pipelines: the creative C library and its Python binding\n"
        "License: MIT OR Apache-2.0\n"
        "Requires-Python: >=3.8\n" % version
    ).encode()
    wheel = ("Wheel-Version: 1.0\nGenerator: creative build_wheel.py\nRoot-Is-Purelib: false\nTag: %s\n" % tag).encode()
    files = [
        ("creative/__init__.py", init),
        ("creative/" + lib_name, lib_bytes),
        (dist + "/METADATA", metadata),
        (dist + "/WHEEL", wheel),
        (dist + "/top_level.txt", b"creative\n"),
    ]
    record = "\n".join([record_line(n, d) for n, d in files] + [dist + "/RECORD,,", ""]).encode()
    files.append((dist + "/RECORD", record))

    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, "creative-%s-%s.whl" % (version, tag))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            # The library must stay executable once installed.
            info.external_attr = (0o755 if name.endswith((".so", ".dylib", ".dll")) else 0o644) << 16
            z.writestr(info, data)
    print(path)


if __name__ == "__main__":
    main()
