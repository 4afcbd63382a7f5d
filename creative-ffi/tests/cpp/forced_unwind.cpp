// A C++ host whose callbacks end their own thread (pthread_exit, as an embedded
// Python's finalization does): creative.hpp's catch-alls must let the forced
// unwind pass, and the library too; the process carries on and exits 0.
//
//   g++ -std=c++17 forced_unwind.cpp $(pkg-config --cflags --libs creative) -o forced_unwind
//   ./forced_unwind OUT_DIR
#include <pthread.h>

#include <atomic>
#include <cstdio>
#include <string>

#include "creative.hpp"

static int failures = 0, checks = 0;
static void check(bool ok, const char* what) {
  ++checks;
  if (!ok) {
    ++failures;
    std::printf("FAIL: %s\n", what);
  }
}

static std::string spec(const char* step_kind) {
  return std::string(
             "name = \"u\"\n[providers.procedural]\nkind = \"procedural\"\n"
             "[matrix]\nshot = [\"a\", \"b\", \"c\"]\n"
             "[[steps]]\nname = \"concept\"\nkind = \"generate\"\nproviders = [\"procedural\"]\n"
             "prompt = \"p {{ shot }}\"\nsize = \"16x16\"\n"
             "[[steps]]\nname = \"frame\"\nkind = \"") +
         step_kind + "\"\ninputs = [\"concept\"]\nproduces = \"image\"\n";
}

int main(int argc, char** argv) {
  std::string out = argc > 1 ? argv[1] : "out";
  creative::engine eng;
  eng.register_step("ends_thread", [](creative::host_call&) { pthread_exit(nullptr); });
  eng.register_step("copy", [](creative::host_call& call) {
    auto in = call.input(0);
    call.add_output("image/png", in.first.ptr, in.first.len);
  });
  {
    creative::run run(eng, spec("ends_thread"), "{\"out_dir\": \"" + out + "/step\"}");
    check(run.wait() == CREATIVE_STATUS_STEP_FAILED, "a host step ended by pthread_exit fails its step");
  }
  std::atomic<int> events{0};
  {
    creative::run run(eng, spec("copy"), "{\"out_dir\": \"" + out + "/events\"}", [&](std::string_view) {
      if (events.fetch_add(1) == 1) pthread_exit(nullptr);
    });
    check(run.wait() == CREATIVE_STATUS_OK, "a run whose event thread was ended still finishes");
    check(events.load() == 2, "no event after the thread ended");
  }
  check(eng.shutdown(), "shutdown returns at once with nothing running");
  std::printf("%d passed, %d failed\n", checks - failures, failures);
  return failures ? 1 : 0;
}
