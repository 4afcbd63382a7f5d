//! API keys never reach Debug output, error messages, error bodies or logs, for
//! every HTTP backend, on success and on every kind of failure, even when the
//! server echoes the key back.
#![cfg(all(feature = "openai", feature = "ollama", feature = "gemini", feature = "elevenlabs"))]

#[path = "it/support/mod.rs"]
mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use creative_core::{CallCtx, Provider, Request, Task};
use serde_json::json;
use support::{build, MockServer, Reply};

const SECRET: &str = "sk-NEVER-PRINT-ME-4c7d9e";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Case {
    kind: &'static str,
    path: &'static str,
    request: Request,
    ok: Reply,
}

fn cases() -> Vec<Case> {
    let mut audio = Request::new(Task::Audio, "hello");
    audio.params.voice = Some("voice1".into());
    vec![
        Case {
            kind: "openai",
            path: "/chat/completions",
            request: Request::new(Task::Text, "hello"),
            ok: Reply::json(
                200,
                json!({"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}]}),
            ),
        },
        Case {
            kind: "ollama",
            path: "/api/chat",
            request: Request::new(Task::Text, "hello"),
            ok: Reply::json(
                200,
                json!({"message": {"role": "assistant", "content": "hi"}, "done": true}),
            ),
        },
        Case {
            kind: "gemini",
            path: "/models/gemini-2.5-flash:generateContent",
            request: Request::new(Task::Text, "hello"),
            ok: Reply::json(200, json!({"candidates": [{"content": {"parts": [{"text": "hi"}]}}]})),
        },
        Case {
            kind: "elevenlabs",
            path: "/v1/text-to-speech/voice1",
            request: audio,
            ok: Reply::bytes(200, "audio/mpeg", b"ID3\x04\0\0\0\0\0\0audio".to_vec()),
        },
    ]
}

fn assert_clean(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what} leaks the key: {text}");
    // Not even a long prefix of it.
    assert!(!text.contains(&SECRET[..12]), "{what} leaks part of the key: {text}");
}

async fn exercise(p: &Arc<dyn Provider>, mock: &MockServer, case: &Case) {
    // Success: the key is sent...
    mock.reset();
    mock.route("POST", case.path, case.ok.clone());
    p.generate(&case.request, &CallCtx::detached()).await.unwrap();
    let sent = mock.last();
    assert!(
        sent.headers.iter().any(|(_, v)| v.contains(SECRET)),
        "{}: the key should be sent to the provider",
        case.kind
    );
    // ...and failures that echo it back never show it.
    let echo = format!("Incorrect API key provided: {SECRET}");
    for reply in [
        Reply::json(401, json!({"error": {"message": echo, "code": "invalid_api_key"}})),
        Reply::json(403, json!({"detail": {"status": "invalid_api_key", "message": echo}})),
        Reply::json(400, json!({"error": echo})),
        Reply::bytes(500, "text/plain", echo.clone().into_bytes()),
        Reply::json(429, json!({"error": {"message": echo}})).header("retry-after", "1"),
    ] {
        mock.reset();
        mock.route("POST", case.path, reply);
        let e = p.generate(&case.request, &CallCtx::detached()).await.unwrap_err();
        assert_clean("error Display", &e.to_string());
        assert_clean("error Debug", &format!("{e:?}"));
        assert_clean("error body", e.body().unwrap_or(""));
        assert_clean("error message", e.message());
    }
}

#[tokio::test]
async fn keys_never_show_in_debug_errors_or_logs() {
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mock = MockServer::start().await;
    for case in cases() {
        let settings = json!({"base_url": mock.url(), "api_key": SECRET});
        let p = build(case.kind, settings).unwrap();
        exercise(&p, &mock, &case).await;
    }
    // Keys from the environment behave the same.
    std::env::set_var("CREATIVE_SECRETS_TEST_KEY", SECRET);
    for case in cases() {
        let settings = json!({"base_url": mock.url(), "api_key_env": "CREATIVE_SECRETS_TEST_KEY"});
        let p = build(case.kind, settings).unwrap();
        exercise(&p, &mock, &case).await;
    }

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("http call"),
        "the test must see the HTTP layer's logs: {text}"
    );
    assert!(
        text.contains("Incorrect API key provided: ***"),
        "the echoed key was logged, scrubbed: {text}"
    );
    assert_clean("tracing output", &text);
}

#[test]
fn concrete_backends_debug_without_the_key() {
    use creative_providers::{elevenlabs::ElevenLabs, gemini::Gemini, ollama::Ollama, openai::OpenAi};
    let s = json!({"api_key": SECRET});
    let shown = format!(
        "{:?} {:?} {:?} {:?}",
        OpenAi::from_settings("o", &s).unwrap(),
        Ollama::from_settings("l", &s).unwrap(),
        Gemini::from_settings("g", &s).unwrap(),
        ElevenLabs::from_settings("e", &s).unwrap(),
    );
    assert!(shown.contains("***"), "the key's place is marked: {shown}");
    assert_clean("backend Debug", &shown);
}

#[test]
fn a_missing_key_variable_is_named_without_a_value() {
    let Err(e) = build("openai", json!({"api_key_env": "CREATIVE_SECRETS_TEST_UNSET_VAR"})) else {
        panic!("an unset key variable must fail the build");
    };
    assert_eq!(e.field(), "api_key_env");
    assert!(e.reason().contains("CREATIVE_SECRETS_TEST_UNSET_VAR"), "{e}");
}
