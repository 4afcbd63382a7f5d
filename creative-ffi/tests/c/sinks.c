/*
 * A C11 host sink: the host's asset shelf takes each asset as it lands.
 *
 *  1. registers a sink ("shelf") that records every asset it is handed,
 *     refuses the lamp's asset for good in the first run, and refuses the
 *     mug's once with a passing status (taken on the retry);
 *  2. runs a three-product campaign: the shelf holds two assets, the report
 *     lists the lamp's refusal;
 *  3. resumes the run: the shelf is handed exactly the lamp's asset again,
 *     with the same run and event ids, and takes it;
 *  4. runs the campaign in pump mode: every delivery comes on the pumping
 *     thread;
 *  5. misuse: a struct_size too small, a NULL deliver, set_url outside a
 *     sink; user data is freed exactly once.
 *
 * Run: ./sinks OUT_DIR. It prints "N passed, N failed" last and exits
 * non-zero on any failure.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "creative.h"

static int passed = 0;
static int failed = 0;

#define CHECK(cond, ...)                                                      \
  do {                                                                        \
    if (cond) {                                                               \
      passed++;                                                               \
    } else {                                                                  \
      failed++;                                                               \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                    \
      fprintf(stderr, __VA_ARGS__);                                           \
      fprintf(stderr, " (last error: %s)\n", creative_last_error_message()); \
    }                                                                         \
  } while (0)

#define EXPECT_STATUS(expr, want)                                                       \
  do {                                                                                  \
    creative_status got_ = (expr);                                                      \
    CHECK(got_ == (want), "%s returned %s, expected %s", #expr,                         \
          creative_status_name((int32_t)got_), creative_status_name((int32_t)(want))); \
  } while (0)

/* ------------------------------------------------------------- the shelf */

#define MAX_TAKEN 32

typedef struct {
  char id[80];
  char event[80];
  char run[80];
  char product[16];
  size_t bytes;
  int png; /* the bytes start with the PNG signature */
  int on_main;
} taken;

typedef struct {
  pthread_mutex_t lock;
  int refuse_lamp; /* refuse the lamp's asset for good */
  int mug_refusals; /* passing refusals of the mug's asset so far */
  int calls;
  int refused;
  char refused_id[80];
  char refused_event[80];
  int n;
  taken items[MAX_TAKEN];
  atomic_int freed;
} shelf;

static pthread_t main_thread;

static void copy(char *dst, size_t cap, const char *src) {
  snprintf(dst, cap, "%s", src ? src : "");
}

static int shelf_deliver(void *user_data, const creative_sink_asset *asset, creative_host_call *call) {
  shelf *s = user_data;
  if (asset->struct_size < sizeof(creative_sink_asset)) {
    creative_host_call_fail(call, "asset view from an older library");
    return CREATIVE_STATUS_INVALID_ARGUMENT;
  }
  const char *product = strstr(asset->vars_json, "\"lamp\"") ? "lamp"
                        : strstr(asset->vars_json, "\"mug\"") ? "mug"
                                                              : "vase";
  pthread_mutex_lock(&s->lock);
  s->calls++;
  if (strcmp(product, "lamp") == 0 && s->refuse_lamp) {
    s->refused++;
    copy(s->refused_id, sizeof s->refused_id, asset->id);
    copy(s->refused_event, sizeof s->refused_event, asset->event_id);
    pthread_mutex_unlock(&s->lock);
    creative_host_call_fail(call, "the lamp shelf is full");
    return CREATIVE_STATUS_INVALID_ARGUMENT;
  }
  if (strcmp(product, "mug") == 0 && s->mug_refusals == 0) {
    s->mug_refusals++;
    pthread_mutex_unlock(&s->lock);
    creative_host_call_fail(call, "the shelf is busy, try again");
    return CREATIVE_STATUS_TIMEOUT;
  }
  if (s->n < MAX_TAKEN) {
    taken *t = &s->items[s->n++];
    copy(t->id, sizeof t->id, asset->id);
    copy(t->event, sizeof t->event, asset->event_id);
    copy(t->run, sizeof t->run, asset->run_id);
    copy(t->product, sizeof t->product, product);
    t->bytes = asset->data.len;
    t->png = asset->data.len > 8 && memcmp(asset->data.ptr, "\x89PNG", 4) == 0;
    t->on_main = pthread_equal(pthread_self(), main_thread);
  }
  pthread_mutex_unlock(&s->lock);
  char url[128];
  snprintf(url, sizeof url, "shelf://%s", asset->id);
  return creative_host_call_set_url(call, url) == CREATIVE_STATUS_OK ? CREATIVE_STATUS_OK : CREATIVE_STATUS_INTERNAL;
}

static atomic_int finishes;
static int shelf_finish(void *user_data, creative_host_call *call) {
  (void)user_data;
  const char *ctx = NULL;
  if (creative_host_call_context_json(call, &ctx) == CREATIVE_STATUS_OK && strstr(ctx, "\"role\":\"sink_finish\"")) {
    atomic_fetch_add(&finishes, 1);
  }
  /* A sink's finish hands nothing back: set_url is refused. */
  if (creative_host_call_set_url(call, "shelf://end") != CREATIVE_STATUS_WRONG_STATE) {
    creative_host_call_fail(call, "set_url was allowed in finish");
    return CREATIVE_STATUS_INTERNAL;
  }
  return CREATIVE_STATUS_OK;
}

static void shelf_free(void *user_data) {
  shelf *s = user_data;
  atomic_fetch_add(&s->freed, 1);
}

static atomic_int loose_freed;
static void loose_free(void *user_data) {
  (void)user_data;
  atomic_fetch_add(&loose_freed, 1);
}

/* ------------------------------------------------------------------ spec */

static const char *SPEC =
    "name = \"shelf-campaign\"\n"
    "[providers.procedural]\n"
    "kind = \"procedural\"\n"
    "[matrix]\n"
    "product = [\"mug\", \"lamp\", \"vase\"]\n"
    "[[steps]]\n"
    "name = \"hero\"\n"
    "kind = \"generate\"\n"
    "providers = [\"procedural\"]\n"
    "prompt = \"a {{ product }} on a shelf\"\n"
    "size = \"32x32\"\n"
    "[output]\n"
    "sinks = [{ kind = \"shelf\", retries = 1, backoff_ms = 1 }]\n";

static char *options(const char *out_dir, const char *sub, const char *extra) {
  size_t n = strlen(out_dir) + strlen(sub) + strlen(extra) + 64;
  char *s = malloc(n);
  snprintf(s, n, "{\"out_dir\": \"%s/%s\"%s}", out_dir, sub, extra);
  return s;
}

static creative_run_state run_to_end(creative_engine *engine, const char *opts) {
  creative_run *run = NULL;
  creative_run_state state = CREATIVE_RUN_STATE_FAILED;
  EXPECT_STATUS(creative_run_start(engine, SPEC, opts, NULL, NULL, &run), CREATIVE_STATUS_OK);
  if (!run) return state;
  EXPECT_STATUS(creative_run_wait(run, CREATIVE_WAIT_FOREVER), CREATIVE_STATUS_OK);
  creative_run_poll(run, &state);
  char *report = NULL;
  if (creative_run_report_json(run, &report) == CREATIVE_STATUS_OK) {
    /* Only the first run refuses the lamp: its report says so. */
    if (strstr(opts, "resume") == NULL && strstr(opts, "pump") == NULL) {
      CHECK(strstr(report, "the lamp shelf is full") != NULL, "the report lists the refusal: %s", report);
    } else {
      CHECK(strstr(report, "the lamp shelf is full") == NULL, "no refusal in this run's report");
    }
    creative_string_free(report);
  }
  creative_run_free(run);
  return state;
}

int main(int argc, char **argv) {
  const char *out_dir = argc > 1 ? argv[1] : "creative-sinks-out";
  main_thread = pthread_self();

  creative_engine *engine = NULL;
  EXPECT_STATUS(creative_engine_new("{\"worker_threads\": 2}", &engine), CREATIVE_STATUS_OK);
  if (!engine) return 1;

  static shelf s;
  memset(&s, 0, sizeof s);
  pthread_mutex_init(&s.lock, NULL);
  atomic_init(&s.freed, 0);
  s.refuse_lamp = 1;
  creative_host_sink sink = {
      .struct_size = sizeof(creative_host_sink),
      .user_data = &s,
      .free_user_data = shelf_free,
      .deliver = shelf_deliver,
      .finish = shelf_finish,
  };
  EXPECT_STATUS(creative_engine_register_sink(engine, "shelf", &sink), CREATIVE_STATUS_OK);

  /* 2. First run: the lamp is refused, the mug taken on its retry. */
  char *o1 = options(out_dir, "shelf", "");
  CHECK(run_to_end(engine, o1) == CREATIVE_RUN_STATE_SUCCEEDED, "a refused delivery does not fail the run");
  pthread_mutex_lock(&s.lock);
  CHECK(s.n == 2, "the shelf took 2 assets, took %d", s.n);
  CHECK(s.refused == 1, "the lamp was refused once (for good, no retry), %d", s.refused);
  CHECK(s.mug_refusals == 1 && s.calls == 4, "the mug was offered again after its passing refusal: %d calls",
        s.calls);
  for (int i = 0; i < s.n; i++) {
    CHECK(strcmp(s.items[i].product, "lamp") != 0, "the lamp is not on the shelf");
    CHECK(s.items[i].png && s.items[i].bytes > 8, "the bytes are the PNG (%zu bytes)", s.items[i].bytes);
    CHECK(!s.items[i].on_main, "threads mode delivers on a library thread");
  }
  char run_id[80];
  copy(run_id, sizeof run_id, s.n ? s.items[0].run : "");
  int first_n = s.n;
  s.refuse_lamp = 0;
  s.calls = 0;
  pthread_mutex_unlock(&s.lock);
  CHECK(atomic_load(&finishes) == 1, "finish told once, %d", atomic_load(&finishes));

  /* 3. Resume: exactly the refused asset comes again, under its ids. */
  char *o2 = options(out_dir, "shelf", ", \"resume\": true");
  CHECK(run_to_end(engine, o2) == CREATIVE_RUN_STATE_SUCCEEDED, "the resumed run succeeds");
  pthread_mutex_lock(&s.lock);
  CHECK(s.calls == 1, "the resume offered exactly one asset, offered %d", s.calls);
  CHECK(s.n == first_n + 1, "the shelf now holds %d assets", s.n);
  if (s.n == first_n + 1) {
    taken *t = &s.items[first_n];
    CHECK(strcmp(t->product, "lamp") == 0, "the one redelivered is the lamp's, got %s", t->product);
    CHECK(strcmp(t->id, s.refused_id) == 0, "same asset: %s vs %s", t->id, s.refused_id);
    CHECK(strcmp(t->event, s.refused_event) == 0, "same event id on the resume");
    CHECK(strcmp(t->run, run_id) == 0, "same run id on the resume");
  }
  s.calls = 0;
  pthread_mutex_unlock(&s.lock);

  /* 4. Pump mode: deliveries come on the pumping thread only. */
  char *o3 = options(out_dir, "shelf-pump", ", \"host_calls\": \"pump\"");
  creative_run *run = NULL;
  EXPECT_STATUS(creative_run_start(engine, SPEC, o3, NULL, NULL, &run), CREATIVE_STATUS_OK);
  creative_run_state state = CREATIVE_RUN_STATE_RUNNING;
  int pumps = 0;
  while (run && pumps < 10000) {
    creative_status st = creative_run_pump(run, 50, &state);
    pumps++;
    if (st != CREATIVE_STATUS_OK || state != CREATIVE_RUN_STATE_RUNNING) break;
  }
  CHECK(state == CREATIVE_RUN_STATE_SUCCEEDED, "pumped run state %d after %d pumps", (int)state, pumps);
  creative_run_free(run);
  pthread_mutex_lock(&s.lock);
  CHECK(s.calls == 3, "the pumped run offered its 3 assets once each: %d calls", s.calls);
  for (int i = first_n + 1; i < s.n; i++) {
    CHECK(s.items[i].on_main, "pump mode delivers on the pumping thread");
  }
  pthread_mutex_unlock(&s.lock);

  /* 5. Misuse. */
  creative_host_sink small = sink;
  small.struct_size = sizeof(size_t);
  small.user_data = NULL;
  small.free_user_data = loose_free;
  EXPECT_STATUS(creative_engine_register_sink(engine, "small", &small), CREATIVE_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(creative_last_error_message(), "struct_size") != NULL, "the message names struct_size");
  CHECK(atomic_load(&loose_freed) == 0, "nothing freed when the struct cannot be read");
  creative_host_sink no_deliver = small;
  no_deliver.struct_size = sizeof(creative_host_sink);
  no_deliver.deliver = NULL;
  EXPECT_STATUS(creative_engine_register_sink(engine, "nodeliver", &no_deliver), CREATIVE_STATUS_NULL_POINTER);
  CHECK(atomic_load(&loose_freed) == 1, "user data freed when registration fails");
  EXPECT_STATUS(creative_engine_register_sink(engine, "shelf", NULL), CREATIVE_STATUS_NULL_POINTER);
  EXPECT_STATUS(creative_host_call_set_url(NULL, "x"), CREATIVE_STATUS_NULL_POINTER);

  creative_engine_free(engine);
  CHECK(atomic_load(&s.freed) == 1, "the shelf freed exactly once, %d", atomic_load(&s.freed));
  pthread_mutex_destroy(&s.lock);
  free(o1);
  free(o2);
  free(o3);

  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
