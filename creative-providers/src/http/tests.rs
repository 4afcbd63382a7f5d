use std::time::{Duration, Instant, SystemTime};

use creative_core::{CallCtx, ErrorKind, MediaType, ProviderError};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{json, Map};

use super::*;

fn hm(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

#[test]
fn go_durations_parse() {
    assert_eq!(parse_go_duration("1s"), Some(Duration::from_secs(1)));
    assert_eq!(parse_go_duration("6m0s"), Some(Duration::from_secs(360)));
    assert_eq!(parse_go_duration("20ms"), Some(Duration::from_millis(20)));
    assert_eq!(parse_go_duration("1h2m3.5s"), Some(Duration::from_secs_f64(3723.5)));
    assert_eq!(parse_go_duration("abc"), None);
    assert_eq!(parse_go_duration("5x"), None);
    assert_eq!(parse_go_duration(""), None);
}

#[test]
fn retry_after_reads_every_header_form() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    assert_eq!(
        retry_after(&hm(&[("retry-after", "3")]), now),
        Some(Duration::from_secs(3))
    );
    assert_eq!(
        retry_after(&hm(&[("retry-after-ms", "1500")]), now),
        Some(Duration::from_millis(1500))
    );
    let date = httpdate::fmt_http_date(now + Duration::from_secs(7));
    assert_eq!(
        retry_after(&hm(&[("retry-after", &date)]), now),
        Some(Duration::from_secs(7))
    );
    assert_eq!(
        retry_after(&hm(&[("x-ratelimit-reset-requests", "6m0s")]), now),
        Some(Duration::from_secs(360))
    );
    let both = hm(&[
        ("x-ratelimit-reset-requests", "2s"),
        ("x-ratelimit-reset-tokens", "30s"),
        ("x-ratelimit-remaining-requests", "0"),
        ("x-ratelimit-remaining-tokens", "100"),
    ]);
    assert_eq!(retry_after(&both, now), Some(Duration::from_secs(2)));
    assert_eq!(
        retry_after(&hm(&[("x-ratelimit-reset", "1700000010")]), now),
        Some(Duration::from_secs(10))
    );
    assert_eq!(retry_after(&HeaderMap::new(), now), None);
}

#[test]
fn error_bodies_of_every_common_shape_yield_a_message() {
    let cases = [
        (
            json!({"error": {"message": "bad size", "type": "invalid_request_error", "code": null}}),
            "bad size",
            Some("invalid_request_error"),
        ),
        (
            json!({"error": {"code": 400, "message": "API key not valid", "status": "INVALID_ARGUMENT"}}),
            "API key not valid",
            Some("INVALID_ARGUMENT"),
        ),
        (json!({"error": "model not found"}), "model not found", None),
        (json!({"detail": "Invalid token"}), "Invalid token", None),
        (
            json!({"detail": {"status": "quota_exceeded", "message": "over quota"}}),
            "over quota",
            Some("quota_exceeded"),
        ),
        (
            json!({"detail": [{"loc": ["body", "x"], "msg": "field required"}]}),
            "field required",
            None,
        ),
        (
            json!({"id": "1", "name": "content_moderation", "errors": ["flagged"]}),
            "flagged",
            Some("content_moderation"),
        ),
        (
            json!({"title": "Not found", "detail": "no such model"}),
            "Not found: no such model",
            None,
        ),
        (json!({"message": "nope", "code": "E1"}), "nope", Some("E1")),
    ];
    for (body, msg, code) in cases {
        let (m, c) = parse_error_body(&body);
        assert_eq!(m.as_deref(), Some(msg), "{body}");
        assert_eq!(c.as_deref(), code, "{body}");
    }
}

fn transport() -> Transport {
    Transport::builder("p", "http://127.0.0.1:9/v1")
        .auth(Auth::Bearer(ApiKey::new("sk-secret-123")))
        .build()
        .unwrap()
}

#[test]
fn statuses_map_to_classes() {
    let t = transport();
    let h = HeaderMap::new();
    let kind = |s: u16, b: &str| t.error_from_response(s, &h, b.as_bytes()).kind();
    assert_eq!(kind(400, "{}"), ErrorKind::Invalid);
    assert_eq!(kind(404, ""), ErrorKind::Invalid);
    assert_eq!(kind(422, ""), ErrorKind::Invalid);
    assert_eq!(kind(401, ""), ErrorKind::Auth);
    assert_eq!(kind(403, ""), ErrorKind::Auth);
    assert_eq!(kind(429, ""), ErrorKind::RateLimited);
    assert_eq!(kind(500, ""), ErrorKind::Transient);
    assert_eq!(kind(503, ""), ErrorKind::Transient);
    assert_eq!(
        kind(
            400,
            r#"{"error":{"message":"Your request was rejected as a result of our safety system.","code":"content_policy_violation"}}"#
        ),
        ErrorKind::ContentPolicy
    );
    assert_eq!(
        kind(429, r#"{"error":{"message":"quota","code":"insufficient_quota"}}"#),
        ErrorKind::Auth
    );
}

#[test]
fn google_retry_info_in_the_body_gives_the_delay() {
    let t = transport();
    let body = br#"{"error":{"code":429,"message":"Resource exhausted","status":"RESOURCE_EXHAUSTED",
        "details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"31s"}]}}"#;
    let e = t.error_from_response(429, &HeaderMap::new(), body);
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(31)));
    assert!(e.message().contains("Resource exhausted [RESOURCE_EXHAUSTED]"), "{e}");
}

#[test]
fn the_key_is_scrubbed_from_error_messages_and_bodies() {
    let t = transport();
    let e = t.error_from_response(
        401,
        &HeaderMap::new(),
        br#"{"error":{"message":"bad key sk-secret-123"}}"#,
    );
    assert!(!e.to_string().contains("sk-secret-123"));
    assert!(!e.body().unwrap_or("").contains("sk-secret-123"));
    assert!(!format!("{e:?} {t:?}").contains("sk-secret-123"));
}

#[test]
fn an_html_error_page_is_named_not_dumped() {
    let t = transport();
    let page = b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1>\
        <p>The requested URL was not found on this server.</p></body></html>";
    let e = t.error_from_response(404, &HeaderMap::new(), page);
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert_eq!(
        e.message(),
        "Not Found: the server answered with a web page (\"404 Not Found\") instead of the API's JSON; \
         is `base_url` the API's address?"
    );
    assert!(!e.message().contains("<h1>"));
}

#[test]
fn the_refiner_overrides_the_shared_mapping() {
    fn refine(i: &ErrorInfo<'_>) -> Option<ErrorKind> {
        (i.status == 400 && i.message.contains("blocked")).then_some(ErrorKind::ContentPolicy)
    }
    let t = Transport::builder("p", "http://127.0.0.1:9")
        .error_refiner(refine)
        .build()
        .unwrap();
    let e = t.error_from_response(400, &HeaderMap::new(), br#"{"error":"prompt blocked"}"#);
    assert_eq!(e.kind(), ErrorKind::ContentPolicy);
    assert_eq!(e.message(), "prompt blocked");
}

#[test]
fn targets_join_the_base_url_with_one_slash() {
    let t = Transport::builder("p", "http://h:1/v1/").build().unwrap();
    assert_eq!(
        t.url("images/generations").unwrap().as_str(),
        "http://h:1/v1/images/generations"
    );
    assert_eq!(t.url("/x").unwrap().as_str(), "http://h:1/v1/x");
    assert_eq!(
        t.url("https://cdn.example/a.png").unwrap().as_str(),
        "https://cdn.example/a.png"
    );
}

#[test]
fn downloads_are_allowed_over_https_or_from_the_base_origin_only() {
    let t = Transport::builder("p", "http://127.0.0.1:8080/v1").build().unwrap();
    assert!(t.download_allowed(&Url::parse("https://cdn.example/a.png").unwrap()));
    assert!(t.download_allowed(&Url::parse("http://127.0.0.1:8080/files/a.png").unwrap()));
    assert!(!t.download_allowed(&Url::parse("http://127.0.0.1:8081/a.png").unwrap()));
    assert!(!t.download_allowed(&Url::parse("http://evil.example/a.png").unwrap()));
}

#[test]
fn settings_parse_and_leave_the_rest() {
    let defaults = SettingsDefaults {
        base_url: "https://api.example/v1",
        key_env: None,
        model: "m1",
        timeout: Duration::from_secs(30),
    };
    let (s, rest) = HttpSettings::parse(
        &json!({"model": "m2", "timeout_s": 5, "api_key": "k", "quality": "hd"}),
        defaults,
    )
    .unwrap();
    assert_eq!(s.model, "m2");
    assert_eq!(s.timeout, Duration::from_secs(5));
    assert_eq!(s.base_url.as_str(), "https://api.example/v1");
    assert_eq!(rest.len(), 1);
    assert!(rest.contains_key("quality"));
    assert!(!format!("{s:?}").contains("\"k\""));
    let e = HttpSettings::parse(&json!({"timeout_s": "x"}), defaults).unwrap_err();
    assert!(e.to_string().contains("timeout_s"), "{e}");
    let e = HttpSettings::parse(&json!({"base_url": "ftp://x"}), defaults).unwrap_err();
    assert!(e.to_string().contains("base_url"), "{e}");
}

#[test]
fn raw_is_merged_last() {
    let mut body = json!({"model": "a", "n": 1});
    let mut raw = Map::new();
    raw.insert("n".into(), json!(4));
    raw.insert("extra".into(), json!({"deep": [1, 2]}));
    merge_raw(&mut body, &raw);
    assert_eq!(body, json!({"model": "a", "n": 4, "extra": {"deep": [1, 2]}}));
}

#[test]
fn media_is_sniffed_from_magic_bytes() {
    assert_eq!(sniff_media(b"\x89PNG\r\n\x1a\n...."), Some(MediaType::Png));
    assert_eq!(sniff_media(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(MediaType::Jpeg));
    assert_eq!(sniff_media(b"RIFF\0\0\0\0WEBPVP8 "), Some(MediaType::Webp));
    assert_eq!(sniff_media(b"hello"), None);
}

#[tokio::test(start_paused = true)]
async fn polling_stops_on_cancel_and_on_the_deadline() {
    let ctx = CallCtx::detached();
    let mut p = PollBackoff::new(Duration::from_secs(1), Duration::from_secs(4));
    p.wait(&ctx, "p").await.unwrap();
    ctx.cancel.cancel();
    assert_eq!(p.wait(&ctx, "p").await.unwrap_err().kind(), ErrorKind::Cancelled);

    let mut ctx = CallCtx::detached();
    ctx.deadline = Some(Instant::now() + Duration::from_millis(10));
    let e = sleep_or_cancel(Duration::from_secs(60), &ctx, "p").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);

    let ctx = CallCtx::detached();
    let mut p = PollBackoff::new(Duration::from_secs(1), Duration::from_secs(1)).limit(Duration::from_secs(2));
    p.wait(&ctx, "p").await.unwrap();
    p.wait(&ctx, "p").await.unwrap();
    assert_eq!(p.wait(&ctx, "p").await.unwrap_err().kind(), ErrorKind::Timeout);
}

#[tokio::test]
async fn a_long_job_takes_the_job_back_before_a_failed_poll_returns_and_when_dropped_midway() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    let taken = Arc::new(AtomicU32::new(0));
    let take = |n: &Arc<AtomicU32>| {
        let n = n.clone();
        async move {
            n.fetch_add(1, Ordering::SeqCst);
        }
    };
    let backoff = || PollBackoff::new(Duration::from_millis(1), Duration::from_millis(1));

    let mut job = LongJob::new("p", backoff());
    job.guard().arm(take(&taken));
    let e = job
        .poll(async { Err::<(), _>(ProviderError::new(ErrorKind::Transient, "p", "reset")) })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient);
    assert_eq!(taken.load(Ordering::SeqCst), 1, "taken back before the error came back");
    assert!(!job.guard().is_armed(), "only once");

    // A finished job is not taken back.
    let mut job = LongJob::new("p", backoff());
    job.guard().arm(take(&taken));
    job.wait(&CallCtx::detached()).await.unwrap();
    job.done();
    assert!(!job.guard().is_armed());
    drop(job);

    // A call dropped midway takes it back in the background.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut job = LongJob::new("p", backoff());
    job.guard().arm(async move {
        let _ = tx.send(());
    });
    drop(job);
    tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .expect("the cleanup ran")
        .unwrap();
    assert_eq!(taken.load(Ordering::SeqCst), 1);
}
