// creative.hpp: a C++17 header-only RAII wrapper over creative.h.
//
// Handles free themselves, failures throw creative::error (carrying the status
// and the library's message), host extensions are plain lambdas, and no C++
// exception ever crosses into the library: host callbacks catch everything and
// turn it into the call's failure, except a forced unwind (a thread ended by
// pthread_exit or pthread_cancel, as an embedded Python's finalization does),
// which they let pass: catching it aborts the process, and the library lets it
// through. For the same reason the callbacks are not noexcept.
//
// Main thread: give the run `{"host_calls": "pump"}` and call `run.pump(...)`
// from the thread the host's API requires (a game tick, an editor timer).
//
//   creative::engine eng;
//   eng.register_step("host_render", [](creative::host_call& call) { ... });
//   creative::run run(eng, spec_toml, R"({"out_dir": "out"})",
//                     [](std::string_view event_json) { ... });
//   creative_status how = run.wait();
//   for (const auto& a : run.artifacts()) use(a.data, a.size, a.media_type);
//
// Lifetimes follow the C ABI: artifact views live as long as their run object.
#ifndef CREATIVE_HPP
#define CREATIVE_HPP

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#if defined(__GLIBCXX__)
#include <cxxabi.h>
// A forced unwind must be rethrown from a catch (...) (libstdc++).
#define CREATIVE_RETHROW_FORCED_UNWIND \
  catch (abi::__forced_unwind&) {      \
    throw;                             \
  }
#else
#define CREATIVE_RETHROW_FORCED_UNWIND
#endif

#include "creative.h"

namespace creative {

/// A failed call: the status and the library's message for it.
class error : public std::runtime_error {
 public:
  error(creative_status status, const std::string& what)
      : std::runtime_error(std::string(creative_status_name(static_cast<int32_t>(status))) + ": " + what),
        status_(status) {}
  creative_status status() const noexcept { return status_; }

 private:
  creative_status status_;
};

/// Throw unless `s` is CREATIVE_STATUS_OK.
inline void check(creative_status s) {
  if (s != CREATIVE_STATUS_OK) throw error(s, creative_last_error_message());
}

namespace detail {
/// Take ownership of a string the library allocated.
inline std::string take(char* s) {
  std::unique_ptr<char, void (*)(char*)> guard(s, creative_string_free);
  return s ? std::string(s) : std::string();
}
}  // namespace detail

/// One host callback invocation (valid only inside the callback).
class host_call {
 public:
  explicit host_call(creative_host_call* c) noexcept : c_(c) {}

  /// The call's context JSON (role, kind, settings, job, request...).
  std::string_view context_json() const {
    const char* j = nullptr;
    check(creative_host_call_context_json(c_, &j));
    return j;
  }
  /// Number of input artifacts (a gate has one: the artifact judged).
  size_t input_count() const {
    size_t n = 0;
    check(creative_host_call_input_count(c_, &n));
    return n;
  }
  /// Input `i`: bytes and media type, lent for the callback's duration.
  std::pair<creative_bytes, std::string_view> input(size_t i) const {
    creative_bytes b{};
    const char* media = nullptr;
    check(creative_host_call_input(c_, i, &b, &media));
    return {b, media};
  }
  /// Hand back an output artifact (providers and steps); the bytes are copied.
  void add_output(std::string_view media_type, const void* data, size_t len, const char* meta_json = nullptr) {
    std::string m(media_type);
    check(creative_host_call_add_output(c_, m.c_str(), static_cast<const uint8_t*>(data), len, meta_json));
  }
  /// Set a gate's verdict.
  void set_verdict(bool passed, double score, const char* reason = nullptr) {
    check(creative_host_call_set_verdict(c_, passed, score, reason));
  }
  /// Report a provider call's cost in US dollars.
  void set_cost(double usd) { check(creative_host_call_set_cost(c_, usd)); }
  /// Whether the run was cancelled (long work should stop early).
  bool cancelled() const {
    bool b = false;
    check(creative_host_call_cancelled(c_, &b));
    return b;
  }
  creative_host_call* raw() const noexcept { return c_; }

 private:
  creative_host_call* c_;
};

/// What a host extension does; throw to fail the call (the message is kept).
using host_fn = std::function<void(host_call&)>;

namespace detail {
// Not noexcept: a forced unwind passes through (see the top of this file).
inline int trampoline(void* user_data, creative_host_call* call) {
  auto* fn = static_cast<host_fn*>(user_data);
  host_call c(call);
  try {
    (*fn)(c);
    return CREATIVE_STATUS_OK;
  }
  CREATIVE_RETHROW_FORCED_UNWIND
  catch (const error& e) {
    creative_host_call_fail(call, e.what());
    return e.status();
  } catch (const std::exception& e) {
    creative_host_call_fail(call, e.what());
    return CREATIVE_STATUS_STEP_FAILED;
  } catch (...) {
    creative_host_call_fail(call, "unknown C++ exception");
    return CREATIVE_STATUS_STEP_FAILED;
  }
}
inline void delete_fn(void* user_data) noexcept { delete static_cast<host_fn*>(user_data); }
}  // namespace detail

/// An engine: owns its runtime and the registry of kinds. Move-only.
class engine {
 public:
  /// `config_json`: empty for the defaults, or e.g. `{"worker_threads": 4}`.
  explicit engine(const std::string& config_json = "") {
    check(creative_engine_new(config_json.empty() ? nullptr : config_json.c_str(), &e_));
  }
  ~engine() { creative_engine_free(e_); }
  engine(engine&& o) noexcept : e_(std::exchange(o.e_, nullptr)) {}
  engine& operator=(engine&& o) noexcept {
    if (this != &o) {
      creative_engine_free(e_);
      e_ = std::exchange(o.e_, nullptr);
    }
    return *this;
  }
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  /// Register a host provider kind. The function may run on several library
  /// threads at once.
  void register_provider(const std::string& kind, host_fn fn) {
    creative_host_provider p{new host_fn(std::move(fn)), detail::delete_fn, detail::trampoline};
    check(creative_engine_register_provider(e_, kind.c_str(), &p));
  }
  /// Register a host step kind.
  void register_step(const std::string& kind, host_fn fn) {
    creative_host_step s{new host_fn(std::move(fn)), detail::delete_fn, detail::trampoline};
    check(creative_engine_register_step(e_, kind.c_str(), &s));
  }
  /// Register a host gate kind; call `set_verdict` in the function.
  void register_gate(const std::string& kind, host_fn fn) {
    creative_host_gate g{new host_fn(std::move(fn)), detail::delete_fn, detail::trampoline};
    check(creative_engine_register_gate(e_, kind.c_str(), &g));
  }
  /// Stop every call into the host from this engine (runs are cancelled); waits
  /// up to `timeout` for callbacks in progress. Returns false on timeout.
  bool shutdown(std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) const {
    creative_status s = creative_engine_shutdown(e_, static_cast<uint64_t>(timeout.count()));
    if (s == CREATIVE_STATUS_TIMEOUT) return false;
    check(s);
    return true;
  }
  /// The kinds a spec may name, as JSON.
  std::string kinds_json() const {
    char* s = nullptr;
    check(creative_engine_kinds_json(e_, &s));
    return detail::take(s);
  }
  creative_engine* raw() const noexcept { return e_; }

 private:
  creative_engine* e_ = nullptr;
};

/// One artifact of a finished run, lent for the run object's lifetime.
struct artifact_view {
  size_t index;
  const uint8_t* data;
  size_t size;
  std::string_view media_type;
};

/// A started run. Its destructor cancels and joins a run still going. Move-only.
class run {
 public:
  /// Called on a library thread, one event at a time, in order. Exceptions it
  /// throws are swallowed (they must not reach the library).
  using event_fn = std::function<void(std::string_view event_json)>;

  run(engine& eng, const std::string& spec, const std::string& options_json = "", event_fn on_event = {})
      : on_event_(on_event ? std::make_unique<event_fn>(std::move(on_event)) : nullptr) {
    check(creative_run_start(eng.raw(), spec.c_str(), options_json.empty() ? nullptr : options_json.c_str(),
                             on_event_ ? &run::deliver : nullptr, on_event_.get(), &r_));
  }
  ~run() { creative_run_free(r_); }  // before on_event_ is destroyed: no call after this
  run(run&& o) noexcept : on_event_(std::move(o.on_event_)), r_(std::exchange(o.r_, nullptr)) {}
  run& operator=(run&&) = delete;
  run(const run&) = delete;
  run& operator=(const run&) = delete;

  /// Wait at most `timeout`; returns CREATIVE_STATUS_TIMEOUT if still running,
  /// else how the run ended (OK, CANCELLED, PROVIDER_ERROR...). Never throws for
  /// those: a failed run is an answer, not an exception.
  creative_status wait(std::chrono::milliseconds timeout) const {
    return creative_run_wait(r_, static_cast<uint64_t>(timeout.count()));
  }
  /// Wait for the end; returns how the run ended.
  creative_status wait() const { return creative_run_wait(r_, CREATIVE_WAIT_FOREVER); }
  /// Pump mode (`{"host_calls": "pump"}`): run the queued host calls and events
  /// on this thread for up to `budget` (0: what is queued now); returns the
  /// run's state (CREATIVE_RUN_STATE_RUNNING until it has finished).
  creative_run_state pump(std::chrono::milliseconds budget = std::chrono::milliseconds(0)) const {
    creative_run_state s{};
    check(creative_run_pump(r_, static_cast<uint64_t>(budget.count()), &s));
    return s;
  }
  creative_run_state poll() const {
    creative_run_state s{};
    check(creative_run_poll(r_, &s));
    return s;
  }
  creative_progress progress() const {
    creative_progress p{};
    check(creative_run_progress(r_, &p));
    return p;
  }
  void cancel() const { check(creative_run_cancel(r_)); }
  std::string manifest_json() const {
    char* s = nullptr;
    check(creative_run_manifest_json(r_, &s));
    return detail::take(s);
  }
  std::string report_json() const {
    char* s = nullptr;
    check(creative_run_report_json(r_, &s));
    return detail::take(s);
  }
  std::vector<artifact_view> artifacts() const {
    size_t n = 0;
    check(creative_run_artifact_count(r_, &n));
    std::vector<artifact_view> v;
    v.reserve(n);
    for (size_t i = 0; i < n; i++) {
      creative_bytes b{};
      const char* media = nullptr;
      check(creative_run_artifact_data(r_, i, &b));
      check(creative_run_artifact_media_type(r_, i, &media));
      v.push_back({i, b.ptr, b.len, media});
    }
    return v;
  }
  std::string artifact_info_json(size_t i) const {
    char* s = nullptr;
    check(creative_run_artifact_info_json(r_, i, &s));
    return detail::take(s);
  }
  creative_run* raw() const noexcept { return r_; }

 private:
  // Not noexcept: a forced unwind passes through (see the top of this file).
  static void deliver(const char* json, void* user_data) {
    try {
      (*static_cast<event_fn*>(user_data))(json);
    }
    CREATIVE_RETHROW_FORCED_UNWIND
    catch (...) {
    }
  }
  std::unique_ptr<event_fn> on_event_;
  creative_run* r_ = nullptr;
};

}  // namespace creative

#endif  // CREATIVE_HPP
