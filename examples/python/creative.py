"""creative: a one-file ctypes binding of the creative C ABI (include/creative.h).

Drop this file next to a Blender add-on, a Houdini shelf tool or any Python
script, or install the ``creative`` wheel (python/); it needs only the shared
library (libcreative_ffi.so / .dylib / creative_ffi.dll). The library is found
through, in order: the ``path`` argument of :func:`load` (or ``Engine(library=)``),
the ``CREATIVE_LIBRARY`` environment variable, the library installed beside this
file (the wheel's), then the system's library search. One process holds one
library: once one is loaded (by this module, by another copy of it that some
other add-on ships, or by a native plugin), asking for another file raises
OSError naming both, a load without a path uses the loaded one, and
:func:`library_path` says which it is. Its ABI version and version are checked
against the binding's at load (at import for the wheel).

    import creative
    with creative.Engine() as eng:
        eng.register_step("host_render", lambda call: call.add_output("image/png", render(call)))
        with eng.start(spec_toml, {"out_dir": "out"}, on_event=print) as run:
            run.wait()
            for art in run.artifacts():
                save(art.media_type, art.data)   # bytes, copied out of the run

Errors raise :class:`CreativeError` with the status name and the library's
message. Host callbacks run on library threads; exceptions they raise fail the
call (the message is kept) and never reach the library.

Main thread: DCC APIs (``bpy``...) must be called on the host's main thread.
Start the run with ``{"host_calls": "pump"}`` and call :meth:`Run.pump` from
that thread (a ``bpy.app.timers`` function, or a loop in batch mode): host
steps and ``on_event`` then run there, inside ``pump``, and nowhere else.

At interpreter exit, an ``atexit`` hook shuts every live engine down
(``creative_engine_shutdown``: no callback into Python after it) and frees its
runs, so a script may exit with runs in flight.
"""

import atexit
import ctypes
import ctypes.util
import json
import os
import sys
import threading
import time
import weakref

__all__ = ["CreativeError", "Engine", "Run", "HostCall", "SinkAsset", "Artifact", "load", "library_path", "version",
           "ABI_VERSION", "__version__"]

#: The ABI version this binding was written for (CREATIVE_ABI_VERSION).
ABI_VERSION = 1

#: The library version this binding ships with; a library of another version is
#: refused at load (set CREATIVE_ALLOW_VERSION_MISMATCH=1 to accept any library of
#: the same ABI).
__version__ = "0.1.0"

OK = 0
STATUS_NAMES = [
    "OK", "INVALID_ARGUMENT", "NULL_POINTER", "INVALID_UTF8", "PARSE", "WRONG_STATE",
    "CANCELLED", "TIMEOUT", "PROVIDER_ERROR", "GATE_FAILED", "BUDGET_EXCEEDED", "IO",
    "STEP_FAILED", "INVALID_SPEC", "PANIC", "INTERNAL",
]
STATUS = {name: code for code, name in enumerate(STATUS_NAMES)}
RUN_STATES = ["running", "succeeded", "failed", "cancelled", "budget_exhausted", "degraded", "partial"]
WAIT_FOREVER = 2**64 - 1


class CreativeError(Exception):
    """A call failed: ``status`` is the status name (``"PARSE"``...), ``code`` its number."""

    def __init__(self, code, message):
        self.code = code
        self.status = STATUS_NAMES[code] if 0 <= code < len(STATUS_NAMES) else "UNKNOWN"
        super().__init__("%s: %s" % (self.status, message))


class _Bytes(ctypes.Structure):
    _fields_ = [("ptr", ctypes.POINTER(ctypes.c_uint8)), ("len", ctypes.c_size_t)]


class _Progress(ctypes.Structure):
    _fields_ = [
        ("jobs_total", ctypes.c_uint64),
        ("jobs_done", ctypes.c_uint64),
        ("jobs_failed", ctypes.c_uint64),
        ("steps_done", ctypes.c_uint64),
    ]


_EVENT_FN = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_void_p)
_HOST_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
_FREE_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class _HostExt(ctypes.Structure):
    # creative_host_provider, creative_host_step and creative_host_gate share this layout.
    _fields_ = [("user_data", ctypes.c_void_p), ("free_user_data", _FREE_FN), ("callback", _HOST_FN)]


class _SinkAsset(ctypes.Structure):
    # creative_sink_asset (fields are only ever appended; struct_size says how many).
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("run_id", ctypes.c_char_p),
        ("event_id", ctypes.c_char_p),
        ("id", ctypes.c_char_p),
        ("job", ctypes.c_char_p),
        ("step", ctypes.c_char_p),
        ("index", ctypes.c_size_t),
        ("media_type", ctypes.c_char_p),
        ("data", _Bytes),
        ("path", ctypes.c_char_p),
        ("vars_json", ctypes.c_char_p),
    ]


_SINK_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(_SinkAsset), ctypes.c_void_p)


class _HostSink(ctypes.Structure):
    # creative_host_sink.
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("user_data", ctypes.c_void_p),
        ("free_user_data", _FREE_FN),
        ("deliver", _SINK_FN),
        ("finish", _HOST_FN),
    ]


_lib = None
_lib_path = None
_lib_lock = threading.Lock()
# Live engines and runs, for the exit hook.
_live_engines = weakref.WeakSet()
_live_runs = weakref.WeakSet()


def _declare(lib):
    c_char_pp = ctypes.POINTER(ctypes.c_char_p)
    vp, sz, st = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int
    sigs = {
        "creative_abi_version": (ctypes.c_uint32, []),
        "creative_version": (ctypes.c_char_p, []),
        "creative_last_error_message": (ctypes.c_char_p, []),
        "creative_status_name": (ctypes.c_char_p, [ctypes.c_int32]),
        "creative_string_free": (None, [vp]),
        "creative_engine_new": (st, [ctypes.c_char_p, ctypes.POINTER(vp)]),
        "creative_engine_free": (None, [vp]),
        "creative_engine_shutdown": (st, [vp, ctypes.c_uint64]),
        "creative_engine_kinds_json": (st, [vp, ctypes.POINTER(vp)]),
        "creative_engine_register_provider": (st, [vp, ctypes.c_char_p, ctypes.POINTER(_HostExt)]),
        "creative_engine_register_step": (st, [vp, ctypes.c_char_p, ctypes.POINTER(_HostExt)]),
        "creative_engine_register_gate": (st, [vp, ctypes.c_char_p, ctypes.POINTER(_HostExt)]),
        "creative_engine_register_sink": (st, [vp, ctypes.c_char_p, ctypes.POINTER(_HostSink)]),
        "creative_brief": (st, [vp, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(vp),
                                ctypes.POINTER(vp)]),
        "creative_run_start": (st, [vp, ctypes.c_char_p, ctypes.c_char_p, _EVENT_FN, vp, ctypes.POINTER(vp)]),
        "creative_run_wait": (st, [vp, ctypes.c_uint64]),
        "creative_run_poll": (st, [vp, ctypes.POINTER(ctypes.c_int)]),
        "creative_run_progress": (st, [vp, ctypes.POINTER(_Progress)]),
        "creative_run_cancel": (st, [vp]),
        "creative_run_free": (None, [vp]),
        "creative_run_pump": (st, [vp, ctypes.c_uint64, ctypes.POINTER(ctypes.c_int)]),
        "creative_run_manifest_json": (st, [vp, ctypes.POINTER(vp)]),
        "creative_run_report_json": (st, [vp, ctypes.POINTER(vp)]),
        "creative_run_artifact_count": (st, [vp, ctypes.POINTER(sz)]),
        "creative_run_artifact_data": (st, [vp, sz, ctypes.POINTER(_Bytes)]),
        "creative_run_artifact_media_type": (st, [vp, sz, c_char_pp]),
        "creative_run_artifact_info_json": (st, [vp, sz, ctypes.POINTER(vp)]),
        "creative_host_call_context_json": (st, [vp, c_char_pp]),
        "creative_host_call_input_count": (st, [vp, ctypes.POINTER(sz)]),
        "creative_host_call_input": (st, [vp, sz, ctypes.POINTER(_Bytes), c_char_pp]),
        "creative_host_call_add_output": (st, [vp, ctypes.c_char_p, ctypes.c_char_p, sz, ctypes.c_char_p]),
        "creative_host_call_set_verdict": (st, [vp, ctypes.c_bool, ctypes.c_double, ctypes.c_char_p]),
        "creative_host_call_set_cost": (st, [vp, ctypes.c_double]),
        "creative_host_call_fail": (st, [vp, ctypes.c_char_p]),
        "creative_host_call_set_url": (st, [vp, ctypes.c_char_p]),
        "creative_host_call_cancelled": (st, [vp, ctypes.POINTER(ctypes.c_bool)]),
    }
    for name, (res, args) in sigs.items():
        f = getattr(lib, name)
        f.restype = res
        f.argtypes = args


def _bundled():
    """The library installed beside this file (the wheel's), if any."""
    here = os.path.dirname(os.path.abspath(__file__))
    for name in ("libcreative_ffi.so", "libcreative_ffi.dylib", "creative_ffi.dll"):
        p = os.path.join(here, name)
        if os.path.isfile(p):
            return p
    return None


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def _loaded_elsewhere():
    """A creative library this process already holds though this module did not
    load it (another add-on's copy of the binding, a native plugin): its path,
    or None. Two copies of the library in one process would each run their own
    engines and threads, and which one a host talks to would depend on import
    order, so the first one loaded is the process's."""
    noload = getattr(os, "RTLD_NOLOAD", None)
    if noload is None or os.name != "posix":
        return None
    # dlopen by SONAME with RTLD_NOLOAD finds a loaded library whatever its file
    # name, and never loads one.
    soname = ("libcreative_ffi.%d.dylib" if sys.platform == "darwin" else "libcreative_ffi.so.%d") % ABI_VERSION
    try:
        other = ctypes.CDLL(soname, mode=noload | getattr(os, "RTLD_LAZY", 1))
    except OSError:
        return None
    try:
        info = _DlInfo()
        dladdr = ctypes.CDLL(None).dladdr
        dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
        dladdr.restype = ctypes.c_int
        if dladdr(ctypes.cast(other.creative_abi_version, ctypes.c_void_p), ctypes.byref(info)) and info.dli_fname:
            return os.fsdecode(info.dli_fname)
    except (AttributeError, OSError):
        pass
    return soname


def load(path=None):
    """Load the library once (thread-safe) and check its ABI version and version.

    ``path`` None takes the library this process already holds, else the first
    of CREATIVE_LIBRARY, the bundled library and the system's. Asking for
    another file than the one loaded raises OSError naming both (a process
    holds one creative library)."""
    global _lib, _lib_path
    with _lib_lock:
        if _lib is not None:
            if path is not None and not _same_file(path, _lib_path):
                raise OSError("creative library %s is already loaded in this process; cannot load %s as well"
                              % (_lib_path, path))
            return _lib
        elsewhere = _loaded_elsewhere()
        if elsewhere is not None and path is not None and not _same_file(path, elsewhere):
            raise OSError("creative library %s is already loaded in this process (by another copy of the "
                          "binding or a native plugin); cannot load %s as well" % (elsewhere, path))
        if path is not None:
            candidates = [path]  # an explicit path is the only one tried
        elif elsewhere is not None:
            candidates = [elsewhere]
        else:
            candidates = [os.environ.get("CREATIVE_LIBRARY"), _bundled(), ctypes.util.find_library("creative_ffi")]
        errors = []
        for c in candidates:
            if not c:
                continue
            try:
                lib = ctypes.CDLL(c)
                break
            except OSError as e:
                errors.append("%s: %s" % (c, e))
        else:
            raise OSError("cannot load the creative library (set CREATIVE_LIBRARY to libcreative_ffi's path)%s"
                          % ("; " + "; ".join(errors) if errors else ""))
        _declare(lib)
        got = lib.creative_abi_version()
        if got != ABI_VERSION:
            raise OSError("creative library %s has ABI %d, this binding needs %d" % (c, got, ABI_VERSION))
        v = lib.creative_version().decode("utf-8")
        if v != __version__ and not os.environ.get("CREATIVE_ALLOW_VERSION_MISMATCH"):
            raise OSError("creative library %s is version %s, this binding is %s" % (c, v, __version__))
        _lib = lib
        _lib_path = os.path.abspath(c) if os.path.exists(c) else c
        return lib


def library_path():
    """The path of the loaded library (None before the first load)."""
    return _lib_path


@atexit.register
def _at_exit():
    """Before the interpreter finalizes (when it ends threads that call into
    Python): stop every engine calling back, then free runs and engines."""
    if _lib is None:
        return
    for eng in list(_live_engines):
        if eng._p:
            _lib.creative_engine_shutdown(eng._p, 10000)
    for run in list(_live_runs):
        run.close()
    for eng in list(_live_engines):
        eng.close()


def _check(code):
    if code != OK:
        raise CreativeError(code, _lib.creative_last_error_message().decode("utf-8", "replace"))


def _take_string(ptr):
    """Copy and free a string the library allocated."""
    try:
        return ctypes.string_at(ptr.value).decode("utf-8") if ptr.value else ""
    finally:
        _lib.creative_string_free(ptr)


def _text(s):
    return None if s is None else (s if isinstance(s, bytes) else s.encode("utf-8"))


class HostCall:
    """One call of a host provider, step or gate; valid only inside the callback."""

    def __init__(self, ptr):
        self._p = ptr
        self._context = None

    @property
    def context(self):
        """The call's context (role, kind, settings, job, request, inputs) as a dict."""
        if self._context is None:
            out = ctypes.c_char_p()
            _check(_lib.creative_host_call_context_json(self._p, ctypes.byref(out)))
            self._context = json.loads(out.value.decode("utf-8"))
        return self._context

    def inputs(self):
        """The input artifacts as (media_type, bytes) pairs (copied)."""
        n = ctypes.c_size_t()
        _check(_lib.creative_host_call_input_count(self._p, ctypes.byref(n)))
        result = []
        for i in range(n.value):
            b, media = _Bytes(), ctypes.c_char_p()
            _check(_lib.creative_host_call_input(self._p, i, ctypes.byref(b), ctypes.byref(media)))
            result.append((media.value.decode("utf-8"), ctypes.string_at(b.ptr, b.len)))
        return result

    def add_output(self, media_type, data, meta=None):
        """Hand back an output artifact (providers and steps)."""
        data = _text(data)
        meta_json = None if meta is None else json.dumps(meta).encode("utf-8")
        _check(_lib.creative_host_call_add_output(self._p, _text(media_type), data, len(data), meta_json))

    def set_verdict(self, passed, score, reason=None):
        """Set a gate's verdict."""
        _check(_lib.creative_host_call_set_verdict(self._p, bool(passed), float(score), _text(reason)))

    def set_cost(self, usd):
        """Report a provider call's cost in US dollars."""
        _check(_lib.creative_host_call_set_cost(self._p, float(usd)))

    def set_url(self, url):
        """Say where a sink put the asset it was handed (sinks' ``deliver`` only)."""
        _check(_lib.creative_host_call_set_url(self._p, _text(url)))

    @property
    def cancelled(self):
        """Whether the run was cancelled (long work should stop early)."""
        b = ctypes.c_bool()
        _check(_lib.creative_host_call_cancelled(self._p, ctypes.byref(b)))
        return b.value


class SinkAsset:
    """An asset handed to a host sink: ``id``, ``job``, ``step``, ``index``,
    ``media_type``, ``data`` (bytes, copied), ``path`` (relative to the output
    folder, or None), ``vars`` (dict), ``run_id`` and ``event_id`` (the same on
    every retry and resume of a run)."""

    def __init__(self, a):
        def t(b):
            return None if b is None else b.decode("utf-8")

        self.run_id, self.event_id, self.id = t(a.run_id), t(a.event_id), t(a.id)
        self.job, self.step, self.index = t(a.job), t(a.step), a.index
        self.media_type, self.path = t(a.media_type), t(a.path)
        self.data = ctypes.string_at(a.data.ptr, a.data.len)
        self.vars = json.loads(t(a.vars_json))


class Artifact:
    """A finished artifact: its bytes (copied out of the run), media type and info."""

    def __init__(self, index, media_type, data, info):
        self.index, self.media_type, self.data, self.info = index, media_type, data, info

    def __repr__(self):
        return "Artifact(%d, %s, %d bytes, step=%s)" % (self.index, self.media_type, len(self.data),
                                                       self.info.get("step"))


class Run:
    """A started run. Use as a context manager, or call :meth:`close`; closing a
    run still going cancels it and waits for it."""

    def __init__(self, engine, spec, options=None, on_event=None):
        self._p = ctypes.c_void_p()
        self._errors = []
        self._cb = _EVENT_FN(0)
        if on_event is not None:
            def deliver(event_json, _user_data):
                try:
                    on_event(json.loads(event_json.decode("utf-8")))
                except Exception as e:  # never let an exception reach the library
                    self._errors.append(e)
            self._cb = _EVENT_FN(deliver)  # kept alive as long as the run
        opts = None if options is None else (options if isinstance(options, str) else json.dumps(options))
        as_dict = json.loads(opts) if isinstance(opts, str) and opts.strip() else {}
        self.pumped = isinstance(as_dict, dict) and as_dict.get("host_calls") == "pump"
        _check(_lib.creative_run_start(engine._p, _text(spec), _text(opts), self._cb, None, ctypes.byref(self._p)))
        self._engine = engine  # the engine outlives its runs on the Python side too
        _live_runs.add(self)

    @property
    def callback_errors(self):
        """Exceptions raised by ``on_event`` (they never reach the library)."""
        return list(self._errors)

    def pump(self, budget=0.0):
        """Pump mode: run this run's queued host calls and events on this thread for
        up to ``budget`` seconds (0: what is queued now, without waiting). Returns
        the state name (``"running"`` until the run has finished)."""
        s = ctypes.c_int()
        _check(_lib.creative_run_pump(self._p, max(0, int(budget * 1000)), ctypes.byref(s)))
        return RUN_STATES[s.value]

    def wait(self, timeout=None):
        """Wait for the end (``timeout`` in seconds, None for no limit). Returns the
        final state name; raises CreativeError(TIMEOUT) if still running. A run that
        ended badly is not an exception here: look at the returned state. In pump
        mode this pumps the run on the calling thread until it ends."""
        if self.pumped:
            end = None if timeout is None else time.monotonic() + timeout
            while self.pump(0.1 if end is None else max(0.0, min(0.1, end - time.monotonic()))) == "running":
                if end is not None and time.monotonic() >= end:
                    raise CreativeError(STATUS["TIMEOUT"], "the run has not ended within %s s" % timeout)
            return self.state
        ms = WAIT_FOREVER if timeout is None else max(0, int(timeout * 1000))
        code = _lib.creative_run_wait(self._p, ms)
        if code == STATUS["TIMEOUT"] or code in (STATUS["NULL_POINTER"], STATUS["WRONG_STATE"], STATUS["PANIC"]):
            _check(code)
        return self.state

    @property
    def state(self):
        s = ctypes.c_int()
        _check(_lib.creative_run_poll(self._p, ctypes.byref(s)))
        return RUN_STATES[s.value]

    @property
    def progress(self):
        p = _Progress()
        _check(_lib.creative_run_progress(self._p, ctypes.byref(p)))
        return {f: getattr(p, f) for f, _ in _Progress._fields_}

    def cancel(self):
        _check(_lib.creative_run_cancel(self._p))

    def manifest(self):
        out = ctypes.c_void_p()
        _check(_lib.creative_run_manifest_json(self._p, ctypes.byref(out)))
        return json.loads(_take_string(out))

    def report(self):
        out = ctypes.c_void_p()
        _check(_lib.creative_run_report_json(self._p, ctypes.byref(out)))
        return json.loads(_take_string(out))

    def artifact_count(self):
        n = ctypes.c_size_t()
        _check(_lib.creative_run_artifact_count(self._p, ctypes.byref(n)))
        return n.value

    def artifact_view(self, index):
        """Artifact ``index``'s bytes as a read-only memoryview lent by the library
        (no copy); valid only until the run is closed."""
        b = _Bytes()
        _check(_lib.creative_run_artifact_data(self._p, index, ctypes.byref(b)))
        buf = (ctypes.c_uint8 * b.len).from_address(ctypes.addressof(b.ptr.contents)) if b.len else bytearray()
        return memoryview(buf).toreadonly()

    def artifacts(self):
        """Every artifact, with its bytes copied out (safe to keep after close)."""
        result = []
        for i in range(self.artifact_count()):
            media, info = ctypes.c_char_p(), ctypes.c_void_p()
            _check(_lib.creative_run_artifact_media_type(self._p, i, ctypes.byref(media)))
            _check(_lib.creative_run_artifact_info_json(self._p, i, ctypes.byref(info)))
            result.append(Artifact(i, media.value.decode("utf-8"), bytes(self.artifact_view(i)),
                                   json.loads(_take_string(info))))
        return result

    def close(self):
        if self._p:
            _lib.creative_run_free(self._p)
            self._p = ctypes.c_void_p()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if _lib is not None and getattr(self, "_p", None):
            self.close()


class Engine:
    """An engine: owns its runtime and the registry of provider, step and gate kinds."""

    def __init__(self, config=None, library=None):
        load(library)
        self._p = ctypes.c_void_p()
        cfg = None if config is None else (config if isinstance(config, str) else json.dumps(config))
        _check(_lib.creative_engine_new(_text(cfg), ctypes.byref(self._p)))
        _live_engines.add(self)
        # ctypes callback objects must stay alive while the library may call them.
        self._keep = {}
        self._free_cb = _FREE_FN(self._release)
        self._next = 1

    def _release(self, user_data):
        self._keep.pop(user_data or 0, None)

    def _register(self, fn_name, kind, fn, on_error_status):
        token = self._next
        self._next += 1

        def trampoline(_user_data, call_ptr):
            call = HostCall(call_ptr)
            try:
                fn(call)
                return OK
            except CreativeError as e:
                _lib.creative_host_call_fail(call_ptr, str(e).encode("utf-8", "replace"))
                return e.code
            except BaseException as e:  # never let an exception reach the library
                _lib.creative_host_call_fail(call_ptr, ("%s: %s" % (type(e).__name__, e)).encode("utf-8", "replace"))
                return on_error_status

        cb = _HOST_FN(trampoline)
        self._keep[token] = cb
        ext = _HostExt(ctypes.c_void_p(token), self._free_cb, cb)
        _check(getattr(_lib, fn_name)(self._p, _text(kind), ctypes.byref(ext)))

    def register_provider(self, kind, fn):
        """``fn(call)``: read ``call.context["request"]``, ``call.add_output(...)``."""
        self._register("creative_engine_register_provider", kind, fn, STATUS["PROVIDER_ERROR"])

    def register_step(self, kind, fn):
        """``fn(call)``: read ``call.inputs()``, ``call.add_output(...)``."""
        self._register("creative_engine_register_step", kind, fn, STATUS["STEP_FAILED"])

    def register_gate(self, kind, fn):
        """``fn(call)``: judge ``call.inputs()[0]``, ``call.set_verdict(...)``."""
        self._register("creative_engine_register_gate", kind, fn, STATUS["GATE_FAILED"])

    def register_sink(self, kind, deliver, finish=None):
        """``deliver(asset, call)`` for each asset as it lands (a :class:`SinkAsset`);
        returning normally acknowledges it, raising refuses it: a
        ``CreativeError`` whose status is ``TIMEOUT``, ``IO`` or ``PROVIDER_ERROR``
        has it offered again after a pause, any other exception refuses it until
        a resume. ``finish(call)``, if given, is told when delivery ended."""
        token = self._next
        self._next += 1

        def refuse(call_ptr, e):
            if isinstance(e, CreativeError):
                _lib.creative_host_call_fail(call_ptr, str(e).encode("utf-8", "replace"))
                return e.code
            _lib.creative_host_call_fail(call_ptr, ("%s: %s" % (type(e).__name__, e)).encode("utf-8", "replace"))
            return STATUS["INVALID_ARGUMENT"]

        def on_deliver(_user_data, asset_ptr, call_ptr):
            try:
                deliver(SinkAsset(asset_ptr.contents), HostCall(call_ptr))
                return OK
            except BaseException as e:  # never let an exception reach the library
                return refuse(call_ptr, e)

        def on_finish(_user_data, call_ptr):
            try:
                finish(HostCall(call_ptr))
                return OK
            except BaseException as e:
                return refuse(call_ptr, e)

        cbs = (_SINK_FN(on_deliver), _HOST_FN(on_finish) if finish else _HOST_FN())
        self._keep[token] = cbs
        sink = _HostSink(ctypes.sizeof(_HostSink), ctypes.c_void_p(token), self._free_cb, cbs[0], cbs[1])
        _check(_lib.creative_engine_register_sink(self._p, _text(kind), ctypes.byref(sink)))

    def brief(self, text, provider, options=None):
        """A campaign spec (commented TOML) written by a language model from the
        brief ``text``; ``provider`` is a spec's provider table as a dict (``kind``,
        ``base_url``, ``api_key_env``, ``text_model``...), ``options`` a dict with
        ``max_repairs``, ``temperature``, ``max_tokens``, ``source``, ``base_dir``.
        Returns ``(toml, info)``, ``info`` holding ``rounds``, ``refused``,
        ``cost_usd`` and ``why``."""
        prov = provider if isinstance(provider, str) else json.dumps(provider)
        opts = None if options is None else (options if isinstance(options, str) else json.dumps(options))
        toml, info = ctypes.c_void_p(), ctypes.c_void_p()
        _check(_lib.creative_brief(self._p, _text(text), _text(prov), _text(opts), ctypes.byref(toml),
                                   ctypes.byref(info)))
        return _take_string(toml), json.loads(_take_string(info))

    def kinds(self):
        out = ctypes.c_void_p()
        _check(_lib.creative_engine_kinds_json(self._p, ctypes.byref(out)))
        return json.loads(_take_string(out))

    def start(self, spec, options=None, on_event=None):
        """Start a run of ``spec`` (TOML or JSON text); see :class:`Run`.

        ``options`` is a dict (or JSON text) as ``creative_run_start`` documents:
        ``out_dir``, ``base_dir``, ``resume``, ``force``, ``dry_run``, ``shard``
        (``"K/N"``), ``preflight`` (check first that local servers such as ComfyUI
        answer; raises a ``PROVIDER_ERROR`` at once instead of waiting on them)...
        """
        return Run(self, spec, options, on_event)

    def shutdown(self, timeout=10.0):
        """Stop every callback into Python from this engine (its runs are
        cancelled; see ``creative_engine_shutdown``). Returns True when no callback
        runs any more, False if one was still running after ``timeout`` seconds."""
        if not self._p:
            return True
        code = _lib.creative_engine_shutdown(self._p, max(0, int(timeout * 1000)))
        if code == STATUS["TIMEOUT"]:
            return False
        _check(code)
        return True

    def close(self):
        if self._p:
            _lib.creative_engine_free(self._p)
            self._p = ctypes.c_void_p()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if _lib is not None and getattr(self, "_p", None):
            self.close()


def version():
    """The library's version string."""
    load()
    return _lib.creative_version().decode("utf-8")


# Installed as a package with its library beside it (the wheel): load and check
# it now, so a mismatched install fails at import rather than at first use.
if __name__ != "__main__" and os.path.basename(os.path.dirname(os.path.abspath(__file__))) == "creative" \
        and _bundled() is not None and not os.environ.get("CREATIVE_LIBRARY"):
    load()


if __name__ == "__main__":
    load(sys.argv[1] if len(sys.argv) > 1 else None)
    print("creative %s, ABI %d, library %s" % (version(), _lib.creative_abi_version(), library_path()))
