/*
 * A C11 host of creative: what a C/C++ plugin or a game engine does with the ABI.
 *
 *  1. checks that header and library agree (ABI version);
 *  2. creates an engine and registers its own step ("host_render": render this
 *     in the host) and its own quality gate ("studio_check");
 *  3. runs the offline product campaign (procedural provider, no network),
 *     printing progress from the event callback;
 *  4. reads every artifact's bytes (lent, not copied), the manifest and report;
 *  5. starts a second, slower run and cancels it midway;
 *  6. checks misuse answers with a status, never a crash;
 *  7. frees everything (valgrind checks nothing leaks).
 *
 * Build: cc -std=c11 host.c $(pkg-config --cflags --libs creative) -o host
 * Run:   ./host OUT_DIR
 * It prints "N passed, N failed" last and exits non-zero on any failure.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "creative.h"

static int passed = 0;
static int failed = 0;

#define CHECK(cond, ...)                                    \
  do {                                                      \
    if (cond) {                                             \
      passed++;                                             \
    } else {                                                \
      failed++;                                             \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);  \
      fprintf(stderr, __VA_ARGS__);                         \
      fprintf(stderr, " (last error: %s)\n", creative_last_error_message()); \
    }                                                       \
  } while (0)

#define EXPECT_STATUS(expr, want)                                                   \
  do {                                                                              \
    creative_status got_ = (expr);                                                  \
    CHECK(got_ == (want), "%s returned %s, expected %s", #expr,                     \
          creative_status_name((int32_t)got_), creative_status_name((int32_t)(want))); \
  } while (0)

/* ---------------------------------------------------------------- host step */

/* What the host's renderer keeps across calls. Calls may run concurrently on
 * library threads, so the counters are atomic. */
typedef struct {
  atomic_int renders;
  atomic_int freed;
} render_state;

/* Pump mode: the run's host calls must come on the thread that pumps it. */
static pthread_t main_thread;
static atomic_int pumping;
static atomic_int off_main;

/* "Render this in the host": read the generated PNG (input 0) and produce a
 * small PPM image derived from its bytes, as a DCC tool would render a frame. */
static int host_render(void *user_data, creative_host_call *call) {
  render_state *st = user_data;
  size_t n = 0;
  if (creative_host_call_input_count(call, &n) != CREATIVE_STATUS_OK || n == 0) {
    creative_host_call_fail(call, "host_render needs one input image");
    return CREATIVE_STATUS_INVALID_ARGUMENT;
  }
  creative_bytes in;
  const char *media = NULL;
  if (creative_host_call_input(call, 0, &in, &media) != CREATIVE_STATUS_OK) {
    return CREATIVE_STATUS_INTERNAL;
  }
  const char *ctx = NULL;
  creative_host_call_context_json(call, &ctx);
  if (strstr(ctx, "\"role\":\"step\"") == NULL) {
    creative_host_call_fail(call, "unexpected context");
    return CREATIVE_STATUS_INTERNAL;
  }
  /* A 16x16 RGB frame whose colour comes from the input's bytes. */
  enum { W = 16, H = 16 };
  unsigned char frame[32 + W * H * 3];
  int head = snprintf((char *)frame, 32, "P6\n%d %d\n255\n", W, H);
  unsigned sum = 0;
  for (size_t i = 0; i < in.len; i++) sum = sum * 31u + in.ptr[i];
  for (int i = 0; i < W * H; i++) {
    frame[head + 3 * i + 0] = (unsigned char)(sum >> 16);
    frame[head + 3 * i + 1] = (unsigned char)(sum >> 8);
    frame[head + 3 * i + 2] = (unsigned char)(i * 7 + (int)(sum & 0xff));
  }
  creative_status s = creative_host_call_add_output(call, "image/x-portable-pixmap", frame,
                                                    (size_t)head + W * H * 3,
                                                    "{\"width\":16,\"height\":16}");
  if (s != CREATIVE_STATUS_OK) return s;
  atomic_fetch_add(&st->renders, 1);
  if (atomic_load(&pumping) && !pthread_equal(pthread_self(), main_thread)) atomic_fetch_add(&off_main, 1);
  (void)media;
  return CREATIVE_STATUS_OK;
}

static void free_render_state(void *user_data) {
  render_state *st = user_data;
  atomic_fetch_add(&st->freed, 1);
}

/* ---------------------------------------------------------------- host gate */

typedef struct {
  atomic_int checks;
  atomic_int freed;
} check_state;

/* A studio check: the artifact must be a real PNG of a sensible size. */
static int studio_check(void *user_data, creative_host_call *call) {
  check_state *st = user_data;
  creative_bytes art;
  const char *media = NULL;
  if (creative_host_call_input(call, 0, &art, &media) != CREATIVE_STATUS_OK) {
    creative_host_call_fail(call, "no artifact to judge");
    return CREATIVE_STATUS_INTERNAL;
  }
  atomic_fetch_add(&st->checks, 1);
  /* A gate hands back a verdict, never outputs: the library says so. */
  if (creative_host_call_add_output(call, "text/plain", (const uint8_t *)"x", 1, NULL) !=
      CREATIVE_STATUS_WRONG_STATE) {
    creative_host_call_fail(call, "add_output from a gate was not refused");
    return CREATIVE_STATUS_INTERNAL;
  }
  static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  int is_png = art.len > 8 && memcmp(art.ptr, sig, 8) == 0 && strcmp(media, "image/png") == 0;
  double score = is_png ? (double)art.len / 1000.0 : 0.0;
  return creative_host_call_set_verdict(call, is_png && art.len > 100, score,
                                        is_png ? NULL : "not a PNG");
}

static void free_check_state(void *user_data) {
  check_state *st = user_data;
  atomic_fetch_add(&st->freed, 1);
}

/* A host step that always fails: its failure must become the step's error. */
static int failing_step(void *user_data, creative_host_call *call) {
  (void)user_data;
  creative_host_call_fail(call, "the host renderer crashed (on purpose)");
  return CREATIVE_STATUS_IO;
}

static int freed_failing = 0;
static void free_failing(void *user_data) {
  (void)user_data;
  freed_failing++;
}

/* ----------------------------------------------------------- event callback */

typedef struct {
  atomic_int events;
  atomic_int jobs_finished;
  atomic_int run_finished;
  atomic_int last_seq;
  atomic_int out_of_order;
  atomic_int wait_refused;
  creative_run *const *run; /* where the run handle lives, to call back into it */
} watch;

static int json_int(const char *json, const char *key) {
  const char *p = strstr(json, key);
  return p ? atoi(p + strlen(key)) : -1;
}

/* Runs on a library thread, one event at a time, in order. */
static void on_event(const char *event_json, void *user_data) {
  watch *w = user_data;
  int seq = json_int(event_json, "\"seq\":");
  if (seq != atomic_load(&w->last_seq) + 1) atomic_fetch_add(&w->out_of_order, 1);
  atomic_store(&w->last_seq, seq);
  atomic_fetch_add(&w->events, 1);
  if (strstr(event_json, "\"type\":\"job_finished\"")) {
    atomic_fetch_add(&w->jobs_finished, 1);
    printf("  progress: %d/%d jobs done\n", json_int(event_json, "\"jobs_done\":"),
           json_int(event_json, "\"jobs_total\":"));
    fflush(stdout);
    /* Re-entrancy: polling and waiting on our own run from inside the callback. */
    if (w->run && *w->run) {
      creative_run_state state;
      creative_run_poll(*w->run, &state);
      if (creative_run_wait(*w->run, 0) == CREATIVE_STATUS_WRONG_STATE) {
        atomic_fetch_add(&w->wait_refused, 1);
      }
    }
  }
  if (strstr(event_json, "\"type\":\"run_finished\"")) atomic_fetch_add(&w->run_finished, 1);
}

static void watch_init(watch *w, creative_run *const *run) {
  atomic_init(&w->events, 0);
  atomic_init(&w->jobs_finished, 0);
  atomic_init(&w->run_finished, 0);
  atomic_init(&w->last_seq, -1);
  atomic_init(&w->out_of_order, 0);
  atomic_init(&w->wait_refused, 0);
  w->run = run;
}

/* --------------------------------------------------------------------- spec */

static const char *PRODUCT_SPEC =
    "name = \"product-campaign\"\n"
    "concurrency = 4\n"
    "[providers.procedural]\n"
    "kind = \"procedural\"\n"
    "[matrix]\n"
    "product = [\"mug\", \"lamp\"]\n"
    "channel = [\"web\", \"print\"]\n"
    "[[steps]]\n"
    "name = \"hero\"\n"
    "kind = \"generate\"\n"
    "providers = [\"procedural\"]\n"
    "prompt = \"a {{ product }} for the {{ channel }} campaign, studio light\"\n"
    "size = \"96x64\"\n"
    "gates = [{ kind = \"studio_check\" }]\n"
    "[[steps]]\n"
    "name = \"render\"\n"
    "kind = \"host_render\"\n"
    "inputs = [\"hero\"]\n"
    "produces = \"image\"\n";

/* A slower campaign: many jobs, each call takes 150 ms. */
static const char *SLOW_SPEC =
    "name = \"slow-campaign\"\n"
    "concurrency = 2\n"
    "[providers.procedural]\n"
    "kind = \"procedural\"\n"
    "latency_ms = 150\n"
    "[matrix]\n"
    "product = [\"a\", \"b\", \"c\", \"d\", \"e\", \"f\", \"g\", \"h\", \"i\", \"j\"]\n"
    "[[steps]]\n"
    "name = \"hero\"\n"
    "kind = \"generate\"\n"
    "providers = [\"procedural\"]\n"
    "prompt = \"a {{ product }}\"\n"
    "size = \"32x32\"\n";

static const char *FAILING_SPEC =
    "name = \"failing\"\n"
    "[providers.procedural]\n"
    "kind = \"procedural\"\n"
    "[[steps]]\n"
    "name = \"hero\"\n"
    "kind = \"generate\"\n"
    "providers = [\"procedural\"]\n"
    "prompt = \"a chair\"\n"
    "size = \"32x32\"\n"
    "[[steps]]\n"
    "name = \"render\"\n"
    "kind = \"crashing_render\"\n"
    "inputs = [\"hero\"]\n";

static char *options_for(const char *out_dir, const char *sub) {
  size_t n = strlen(out_dir) + strlen(sub) + 64;
  char *s = malloc(n);
  snprintf(s, n, "{\"out_dir\": \"%s/%s\"}", out_dir, sub);
  return s;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------- main */

int main(int argc, char **argv) {
  const char *out_dir = argc > 1 ? argv[1] : "creative-out";

  /* 1. Header and library agree. */
  CHECK(creative_abi_version() == CREATIVE_ABI_VERSION, "ABI %u != header %u", creative_abi_version(),
        CREATIVE_ABI_VERSION);
  printf("creative %s, ABI %u\n", creative_version(), creative_abi_version());

  /* 2. Engine and host extensions. */
  creative_engine *engine = NULL;
  EXPECT_STATUS(creative_engine_new("{\"worker_threads\": 2}", &engine), CREATIVE_STATUS_OK);
  if (!engine) return 1;

  static render_state rs;
  static check_state cs;
  atomic_init(&rs.renders, 0);
  atomic_init(&rs.freed, 0);
  atomic_init(&cs.checks, 0);
  atomic_init(&cs.freed, 0);
  creative_host_step step = {.user_data = &rs, .free_user_data = free_render_state, .run = host_render};
  creative_host_gate gate = {.user_data = &cs, .free_user_data = free_check_state, .check = studio_check};
  creative_host_step crash = {.user_data = NULL, .free_user_data = free_failing, .run = failing_step};
  EXPECT_STATUS(creative_engine_register_step(engine, "host_render", &step), CREATIVE_STATUS_OK);
  EXPECT_STATUS(creative_engine_register_gate(engine, "studio_check", &gate), CREATIVE_STATUS_OK);
  EXPECT_STATUS(creative_engine_register_step(engine, "crashing_render", &crash), CREATIVE_STATUS_OK);

  /* 3. The product campaign, with progress from the callback. */
  printf("run 1: product campaign\n");
  creative_run *run = NULL;
  watch w1;
  watch_init(&w1, &run);
  char *opts = options_for(out_dir, "product");
  EXPECT_STATUS(creative_run_start(engine, PRODUCT_SPEC, opts, on_event, &w1, &run), CREATIVE_STATUS_OK);
  if (!run) return 1;

  EXPECT_STATUS(creative_run_wait(run, CREATIVE_WAIT_FOREVER), CREATIVE_STATUS_OK);
  creative_run_state state;
  EXPECT_STATUS(creative_run_poll(run, &state), CREATIVE_STATUS_OK);
  CHECK(state == CREATIVE_RUN_STATE_SUCCEEDED, "run 1 state %d", (int)state);
  CHECK(atomic_load(&w1.jobs_finished) == 4, "4 jobs finished, saw %d", atomic_load(&w1.jobs_finished));
  CHECK(atomic_load(&w1.run_finished) == 1, "one run_finished event");
  CHECK(atomic_load(&w1.out_of_order) == 0, "events in order");
  CHECK(atomic_load(&w1.wait_refused) == 4, "wait from the callback refused each time (%d)",
        atomic_load(&w1.wait_refused));
  CHECK(atomic_load(&rs.renders) == 4, "host step rendered 4 frames, did %d", atomic_load(&rs.renders));
  CHECK(atomic_load(&cs.checks) >= 4, "host gate judged every hero, did %d", atomic_load(&cs.checks));

  creative_progress prog;
  EXPECT_STATUS(creative_run_progress(run, &prog), CREATIVE_STATUS_OK);
  CHECK(prog.jobs_total == 4 && prog.jobs_done == 4 && prog.jobs_failed == 0 && prog.steps_done == 8,
        "progress %llu/%llu failed %llu steps %llu", (unsigned long long)prog.jobs_done,
        (unsigned long long)prog.jobs_total, (unsigned long long)prog.jobs_failed,
        (unsigned long long)prog.steps_done);

  /* 4. Artifacts, lent without copying. */
  size_t count = 0;
  EXPECT_STATUS(creative_run_artifact_count(run, &count), CREATIVE_STATUS_OK);
  CHECK(count == 8, "8 artifacts (4 heroes, 4 renders), got %zu", count);
  size_t pngs = 0, ppms = 0, bytes = 0;
  for (size_t i = 0; i < count; i++) {
    creative_bytes data;
    const char *media = NULL;
    EXPECT_STATUS(creative_run_artifact_data(run, i, &data), CREATIVE_STATUS_OK);
    EXPECT_STATUS(creative_run_artifact_media_type(run, i, &media), CREATIVE_STATUS_OK);
    bytes += data.len;
    if (strcmp(media, "image/png") == 0 && data.len > 8 && memcmp(data.ptr, "\x89PNG", 4) == 0) pngs++;
    if (strcmp(media, "image/x-portable-pixmap") == 0 && data.len > 2 && memcmp(data.ptr, "P6", 2) == 0)
      ppms++;
    char *info = NULL;
    EXPECT_STATUS(creative_run_artifact_info_json(run, i, &info), CREATIVE_STATUS_OK);
    CHECK(info && strstr(info, "\"job\":") && strstr(info, "\"step\":"), "artifact info names job and step");
    creative_string_free(info);
  }
  CHECK(pngs == 4 && ppms == 4, "4 PNG heroes and 4 PPM renders, got %zu and %zu", pngs, ppms);
  printf("  %zu artifacts, %zu bytes\n", count, bytes);
  creative_bytes past;
  EXPECT_STATUS(creative_run_artifact_data(run, count, &past), CREATIVE_STATUS_INVALID_ARGUMENT);

  char *manifest = NULL, *report = NULL;
  EXPECT_STATUS(creative_run_manifest_json(run, &manifest), CREATIVE_STATUS_OK);
  EXPECT_STATUS(creative_run_report_json(run, &report), CREATIVE_STATUS_OK);
  CHECK(manifest && manifest[0] == '{', "manifest is a JSON object");
  CHECK(report && report[0] == '{', "report is a JSON object");
  printf("  manifest %zu bytes, report %zu bytes\n", manifest ? strlen(manifest) : 0,
         report ? strlen(report) : 0);
  creative_string_free(manifest);
  creative_string_free(report);
  creative_run_free(run);
  run = NULL;
  free(opts);

  /* 5. A second run, cancelled midway. */
  printf("run 2: cancelled midway\n");
  creative_run *slow = NULL;
  watch w2;
  watch_init(&w2, NULL);
  opts = options_for(out_dir, "slow");
  EXPECT_STATUS(creative_run_start(engine, SLOW_SPEC, opts, on_event, &w2, &slow), CREATIVE_STATUS_OK);
  if (!slow) return 1;
  /* Misuse while it runs: a zero wait times out, results are not ready yet, and
   * a second run into the same output folder is refused. */
  EXPECT_STATUS(creative_run_wait(slow, 0), CREATIVE_STATUS_TIMEOUT);
  EXPECT_STATUS(creative_run_artifact_count(slow, &count), CREATIVE_STATUS_WRONG_STATE);
  char *early = (char *)"not touched";
  EXPECT_STATUS(creative_run_manifest_json(slow, &early), CREATIVE_STATUS_WRONG_STATE);
  CHECK(early == NULL, "out string is NULL after a failure");
  creative_run *twin = (creative_run *)0x1;
  EXPECT_STATUS(creative_run_start(engine, SLOW_SPEC, opts, NULL, NULL, &twin), CREATIVE_STATUS_WRONG_STATE);
  CHECK(twin == NULL, "out handle is NULL after a refused start");
  free(opts);
  for (int i = 0; i < 400 && atomic_load(&w2.jobs_finished) < 2; i++) sleep_ms(5);
  EXPECT_STATUS(creative_run_cancel(slow), CREATIVE_STATUS_OK);
  EXPECT_STATUS(creative_run_wait(slow, 10000), CREATIVE_STATUS_CANCELLED);
  EXPECT_STATUS(creative_run_poll(slow, &state), CREATIVE_STATUS_OK);
  CHECK(state == CREATIVE_RUN_STATE_CANCELLED, "run 2 state %d", (int)state);
  EXPECT_STATUS(creative_run_progress(slow, &prog), CREATIVE_STATUS_OK);
  size_t kept = 0;
  EXPECT_STATUS(creative_run_artifact_count(slow, &kept), CREATIVE_STATUS_OK);
  CHECK(kept >= 2 && kept < 10, "finished work is kept after cancel: %zu of 10", kept);
  printf("  cancelled midway: %zu of 10 heroes finished and kept\n", kept);
  CHECK(atomic_load(&w2.run_finished) == 1, "the cancelled run still ends with run_finished");
  creative_run_free(slow);

  /* A third run freed while running: free cancels and joins. */
  creative_run *dropped = NULL;
  watch w3;
  watch_init(&w3, NULL);
  opts = options_for(out_dir, "dropped");
  EXPECT_STATUS(creative_run_start(engine, SLOW_SPEC, opts, on_event, &w3, &dropped), CREATIVE_STATUS_OK);
  free(opts);
  sleep_ms(20);
  creative_run_free(dropped);
  int events_at_free = atomic_load(&w3.events);
  sleep_ms(200);
  CHECK(atomic_load(&w3.events) == events_at_free, "no callback after creative_run_free returned");

  /* A host step's failure becomes the step's error, not a crash. */
  creative_run *bad = NULL;
  opts = options_for(out_dir, "failing");
  EXPECT_STATUS(creative_run_start(engine, FAILING_SPEC, opts, NULL, NULL, &bad), CREATIVE_STATUS_OK);
  free(opts);
  EXPECT_STATUS(creative_run_wait(bad, CREATIVE_WAIT_FOREVER), CREATIVE_STATUS_IO);
  CHECK(strstr(creative_last_error_message(), "crashed (on purpose)") != NULL, "the host's message is kept");
  creative_run_free(bad);

  /* 6. Misuse: statuses, never crashes. */
  printf("misuse\n");
  creative_run *none = (creative_run *)0x1;
  EXPECT_STATUS(creative_run_start(NULL, PRODUCT_SPEC, NULL, NULL, NULL, &none), CREATIVE_STATUS_NULL_POINTER);
  CHECK(none == NULL, "out handle is NULL after a failed start");
  EXPECT_STATUS(creative_run_start(engine, NULL, NULL, NULL, NULL, &none), CREATIVE_STATUS_NULL_POINTER);
  EXPECT_STATUS(creative_run_start(engine, PRODUCT_SPEC, NULL, NULL, NULL, NULL), CREATIVE_STATUS_NULL_POINTER);
  EXPECT_STATUS(creative_run_start(engine, "name = \"x\xff\"\n", NULL, NULL, NULL, &none),
                CREATIVE_STATUS_INVALID_UTF8);
  EXPECT_STATUS(creative_run_start(engine, "name = [unclosed", NULL, NULL, NULL, &none), CREATIVE_STATUS_PARSE);
  EXPECT_STATUS(creative_run_start(engine, "{\"name\": ", NULL, NULL, NULL, &none), CREATIVE_STATUS_PARSE);
  EXPECT_STATUS(creative_run_start(engine, PRODUCT_SPEC, "{\"out_dirr\": 1}", NULL, NULL, &none),
                CREATIVE_STATUS_PARSE);
  EXPECT_STATUS(creative_run_start(engine,
                                   "name = \"x\"\n[[steps]]\nname = \"a\"\nkind = \"no_such_kind\"\n",
                                   NULL, NULL, NULL, &none),
                CREATIVE_STATUS_INVALID_SPEC);
  CHECK(strstr(creative_last_error_message(), "no_such_kind") != NULL, "the message names the bad kind: %s",
        creative_last_error_message());
  EXPECT_STATUS(creative_run_wait(NULL, 0), CREATIVE_STATUS_NULL_POINTER);
  EXPECT_STATUS(creative_run_poll(NULL, &state), CREATIVE_STATUS_NULL_POINTER);
  EXPECT_STATUS(creative_run_cancel(NULL), CREATIVE_STATUS_NULL_POINTER);
  EXPECT_STATUS(creative_engine_new("{\"worker_threads\": \"two\"}", &(creative_engine *){NULL}),
                CREATIVE_STATUS_PARSE);
  EXPECT_STATUS(creative_engine_new(NULL, NULL), CREATIVE_STATUS_NULL_POINTER);
  CHECK(strcmp(creative_status_name(999), "CREATIVE_STATUS_UNKNOWN") == 0, "unknown status name");
  /* A registration that fails still releases the host's data, exactly once. */
  creative_host_step no_run = {.user_data = NULL, .free_user_data = free_failing, .run = NULL};
  EXPECT_STATUS(creative_engine_register_step(engine, "broken", &no_run), CREATIVE_STATUS_NULL_POINTER);
  EXPECT_STATUS(creative_engine_register_step(engine, "bad kind!", &crash), CREATIVE_STATUS_INVALID_ARGUMENT);
  CHECK(freed_failing == 2, "free_user_data called for each failed registration (%d)", freed_failing);
  creative_run_free(NULL);
  creative_engine_free(NULL);
  creative_string_free(NULL);

  /* 7. Pump mode, for hosts whose API must be called on their main thread:
   * the host step runs only inside creative_run_pump, on this thread. */
  printf("run 4: pumped from the main thread\n");
  main_thread = pthread_self();
  atomic_store(&pumping, 1);
  int renders_before = atomic_load(&rs.renders);
  creative_run *pumped = NULL;
  char *popts = NULL;
  {
    char *base = options_for(out_dir, "pumped");
    size_t n = strlen(base) + 32;
    popts = malloc(n);
    snprintf(popts, n, "%.*s, \"host_calls\": \"pump\"}", (int)strlen(base) - 1, base);
    free(base);
  }
  EXPECT_STATUS(creative_run_start(engine, PRODUCT_SPEC, popts, NULL, NULL, &pumped), CREATIVE_STATUS_OK);
  creative_run_state pstate = CREATIVE_RUN_STATE_RUNNING;
  int pumps = 0;
  while (pumped && pstate == CREATIVE_RUN_STATE_RUNNING && pumps < 100000) {
    EXPECT_STATUS(creative_run_pump(pumped, 20, &pstate), CREATIVE_STATUS_OK);
    pumps++;
  }
  atomic_store(&pumping, 0);
  CHECK(pstate == CREATIVE_RUN_STATE_SUCCEEDED, "pumped run state %d after %d pumps", (int)pstate, pumps);
  CHECK(atomic_load(&rs.renders) - renders_before == 4, "4 frames rendered while pumping");
  CHECK(atomic_load(&off_main) == 0, "no host call off the pumping thread (%d)", atomic_load(&off_main));
  creative_run_free(pumped);
  free(popts);

  /* 8. Before the host's runtime goes away: no call into the host after this. */
  EXPECT_STATUS(creative_engine_shutdown(engine, 5000), CREATIVE_STATUS_OK);
  creative_run *late = NULL;
  EXPECT_STATUS(creative_run_start(engine, PRODUCT_SPEC, NULL, NULL, NULL, &late), CREATIVE_STATUS_WRONG_STATE);

  /* 9. Free everything: host data is released exactly once. */
  creative_engine_free(engine);
  CHECK(atomic_load(&rs.freed) == 1, "render state freed once (%d)", atomic_load(&rs.freed));
  CHECK(atomic_load(&cs.freed) == 1, "check state freed once (%d)", atomic_load(&cs.freed));
  CHECK(freed_failing == 3, "crashing step's data freed with the engine (%d)", freed_failing);

  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
