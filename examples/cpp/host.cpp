// A C++17 host of creative through the header-only RAII wrapper (creative.hpp):
// what a game engine's editor plugin does. It registers a host step that "bakes"
// each generated image into an engine texture record and a gate written as a
// lambda, runs the offline product campaign, and reads the results.
//
// Build: c++ -std=c++17 host.cpp $(pkg-config --cflags --libs creative) -o host_cpp
// Run:   ./host_cpp OUT_DIR      (prints "N passed, N failed" last)
#include <atomic>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

#include "creative.hpp"

static int passed = 0, failed = 0;
#define CHECK(cond, msg)                                      \
  do {                                                        \
    if (cond) {                                               \
      passed++;                                               \
    } else {                                                  \
      failed++;                                               \
      std::cerr << "FAIL " << __LINE__ << ": " << msg << "\n"; \
    }                                                         \
  } while (0)

static const char* SPEC = R"(
name = "texture-bake"
concurrency = 4

[providers.procedural]
kind = "procedural"

[matrix]
asset = ["crate", "barrel", "door"]

[[steps]]
name = "albedo"
kind = "generate"
providers = ["procedural"]
prompt = "a weathered {{ asset }} texture, tileable"
size = "64x64"
gates = [{ kind = "not_tiny" }]

[[steps]]
name = "bake"
kind = "engine_bake"
inputs = ["albedo"]
produces = "text"
)";

int main(int argc, char** argv) {
  std::string out = argc > 1 ? argv[1] : "creative-out";
  std::atomic<int> baked{0}, judged{0}, events{0};
  {
    creative::engine eng(R"({"worker_threads": 2})");

    // A host step: turn each texture into the engine's asset record (JSON text).
    eng.register_step("engine_bake", [&](creative::host_call& call) {
      auto [bytes, media] = call.input(0);
      if (media != "image/png") throw std::runtime_error("engine_bake wants a PNG");
      std::string record = "{\"format\":\"RGBA8\",\"source_bytes\":" + std::to_string(bytes.len) + "}";
      call.add_output("application/json", record.data(), record.size());
      baked++;
    });
    // A studio check as a lambda.
    eng.register_gate("not_tiny", [&](creative::host_call& call) {
      auto [bytes, media] = call.input(0);
      judged++;
      call.set_verdict(bytes.len > 64, static_cast<double>(bytes.len), bytes.len > 64 ? nullptr : "too small");
    });
    CHECK(eng.kinds_json().find("engine_bake") != std::string::npos, "kinds list the host step");

    creative::run run(eng, SPEC, "{\"out_dir\": \"" + out + "/cpp\"}", [&](std::string_view ev) {
      events++;
      if (ev.find("\"type\":\"job_finished\"") != std::string_view::npos) std::cout << "  job finished\n";
    });
    creative_status how = run.wait();
    CHECK(how == CREATIVE_STATUS_OK, "run succeeded: " << creative_status_name(how) << " "
                                                       << creative_last_error_message());
    CHECK(run.poll() == CREATIVE_RUN_STATE_SUCCEEDED, "state succeeded");
    auto arts = run.artifacts();
    size_t pngs = 0, records = 0;
    for (const auto& a : arts) {
      if (a.media_type == "image/png" && a.size > 8 && std::memcmp(a.data, "\x89PNG", 4) == 0) pngs++;
      if (a.media_type == "application/json" && a.size > 0 && a.data[0] == '{') records++;
    }
    CHECK(pngs == 3 && records == 3, "3 textures and 3 records, got " << pngs << " and " << records);
    CHECK(baked == 3, "baked 3");
    CHECK(judged >= 3, "judged every texture");
    CHECK(events > 0, "events delivered");
    CHECK(run.manifest_json().front() == '{', "manifest JSON");
    CHECK(run.report_json().front() == '{', "report JSON");
    auto p = run.progress();
    CHECK(p.jobs_done == 3 && p.jobs_failed == 0, "progress 3 done");

    // Errors are exceptions carrying the status.
    try {
      creative::run bad(eng, "name = [", "");
      CHECK(false, "a malformed spec must throw");
    } catch (const creative::error& e) {
      CHECK(e.status() == CREATIVE_STATUS_PARSE, "malformed spec is a parse error: " << e.what());
    }
    // A throwing host step fails its step, not the process.
    eng.register_step("engine_bake", [](creative::host_call&) { throw std::runtime_error("bake farm offline"); });
    creative::run failing(eng, SPEC, "{\"out_dir\": \"" + out + "/cpp-failing\"}");
    creative_status st = failing.wait();
    CHECK(st == CREATIVE_STATUS_STEP_FAILED, "a throwing host step fails the run: " << creative_status_name(st));
    CHECK(std::strstr(creative_last_error_message(), "bake farm offline") != nullptr, "the exception's message is kept");
    // A run object moved and destroyed while running cancels and joins.
    creative::run slow(eng, SPEC, "{\"out_dir\": \"" + out + "/cpp-moved\"}");
    creative::run moved(std::move(slow));
    (void)moved;
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
