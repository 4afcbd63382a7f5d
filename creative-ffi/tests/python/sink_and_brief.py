"""The binding's host sink and brief: a Python sink takes each asset as it
lands and refuses the lamp's, a resume hands it exactly that one again; a
brief goes to a loopback chat completions server that answers first with a
spec the loader refuses, then with one it takes.

    CREATIVE_LIBRARY=... CREATIVE_BINDING_DIR=... python3 sink_and_brief.py SCRATCH
"""

import http.server
import json
import os
import sys
import threading

sys.path.insert(0, os.environ["CREATIVE_BINDING_DIR"])
import creative  # noqa: E402

checks = 0
failures = []


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        failures.append(what)
        print("FAIL:", what)


SPEC = """
name = "py-shelf"
[providers.procedural]
kind = "procedural"
[matrix]
product = ["mug", "lamp", "vase"]
[[steps]]
name = "hero"
kind = "generate"
providers = ["procedural"]
prompt = "a {{ product }} on a shelf"
size = "32x32"
[output]
sinks = [{ kind = "py_shelf" }]
"""


def sink_test(scratch):
    taken, refused, finished = [], [], []
    lock = threading.Lock()
    state = {"refuse_lamp": True}

    def deliver(asset, call):
        with lock:
            if asset.vars["product"] == "lamp" and state["refuse_lamp"]:
                refused.append(asset.event_id)
                raise ValueError("the lamp shelf is full")
            taken.append(asset)
        call.set_url("shelf://" + asset.id)

    def finish(call):
        finished.append(call.context["role"])

    with creative.Engine() as eng:
        eng.register_sink("py_shelf", deliver, finish)
        out = os.path.join(scratch, "shelf")
        with eng.start(SPEC, {"out_dir": out}) as run:
            check(run.wait() == "succeeded", "a refused delivery does not fail the run")
            check("the lamp shelf is full" in json.dumps(run.report()), "the report lists the refusal")
        check(len(taken) == 2 and all(a.vars["product"] != "lamp" for a in taken), "the shelf took mug and vase")
        check(all(a.data.startswith(b"\x89PNG") for a in taken), "the bytes are the PNGs")
        check(len(refused) == 1, "the lamp was asked once, not again by the end pass: %d" % len(refused))
        check(finished == ["sink_finish"], "finish told once: %r" % finished)
        state["refuse_lamp"] = False
        first = len(taken)
        with eng.start(SPEC, {"out_dir": out, "resume": True}) as run:
            check(run.wait() == "succeeded", "the resume succeeds")
        again = taken[first:]
        check(len(again) == 1 and again[0].vars["product"] == "lamp", "the resume offered exactly the lamp's")
        check(again and again[0].event_id == refused[0], "under the same event id")


def answer(provider):
    return json.dumps({
        "spec": {
            "name": "spring-mugs",
            "providers": {"art": {"kind": "procedural"}},
            "matrix": {"product": ["travel mug", "desk lamp"]},
            "steps": [{"name": "hero", "kind": "generate", "providers": [provider],
                       "prompt": "a calm photo of a {{ product }}", "size": "64x64"}],
        },
        "why": {"matrix.product": "the brief names two products"},
    })


class Chat(http.server.BaseHTTPRequestHandler):
    calls = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Chat.calls.append(body)
        content = answer("painter" if len(Chat.calls) == 1 else "art")
        reply = json.dumps({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def brief_test():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Chat)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    os.environ["CREATIVE_PY_BRIEF_KEY"] = "sk-loopback"
    provider = {"kind": "openai", "base_url": "http://127.0.0.1:%d/v1" % server.server_address[1],
                "api_key_env": "CREATIVE_PY_BRIEF_KEY", "text_model": "gpt-4o-mini"}
    try:
        with creative.Engine() as eng:
            toml, info = eng.brief("Products: travel mug, desk lamp.", provider, {"max_repairs": 1})
            check(info["rounds"] == 2, "one repair: %r" % info)
            check("unknown provider `painter`" in info["refused"][0], "the loader's words: %r" % info["refused"])
            check("# the brief names two products" in toml, "the reasons are comments:\n" + toml)
            try:
                eng.brief("x", provider, {"max_repairs": 11})
                check(False, "max_repairs 11 is refused")
            except creative.CreativeError as e:
                check(e.status == "INVALID_ARGUMENT" and "0 to 10" in str(e), str(e))
        check(len(Chat.calls) == 2, "two model calls, %d" % len(Chat.calls))
    finally:
        server.shutdown()


if __name__ == "__main__":
    creative.load()
    sink_test(sys.argv[1])
    brief_test()
    print("%d passed, %d failed" % (checks - len(failures), len(failures)))
    sys.exit(1 if failures else 0)
