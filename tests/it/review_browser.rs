//! `creative review` in a real browser (issue 18): headless Chromium, driven
//! through chromedriver's WebDriver API, approves one asset, rejects another
//! with a note, filters the page and approves what is shown in bulk; the
//! decisions land in the output folder and the manifest. Where Chromium or
//! chromedriver is not installed (`scripts/test` installs Debian's), the test
//! says so and skips.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common;
use common::temp_dir;

const BIN: &str = env!("CARGO_BIN_EXE_creative");

const SPEC: &str = r#"
name = "review-browser"
[providers.art]
kind = "procedural"
[matrix]
product = ["mug", "lamp", "chair"]
[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "a {{ product }} on a table"
size = "48x48"
gates = [{ kind = "sharpness", min_variance = 1.0 }]
"#;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// A child process ended when the test ends, pass or fail.
struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Poll `f` until it gives `Some`, for at most `limit`.
async fn until<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Driver {
    http: reqwest::Client,
    session: String,
}

impl Driver {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut r = self.http.request(method, format!("{}{path}", self.session));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let v: Value = r.send().await.unwrap().json().await.unwrap();
        assert!(v["value"].get("error").is_none(), "webdriver {path}: {v}");
        v["value"].clone()
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT].as_str().unwrap().to_string()
    }

    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{e}/click"), Some(json!({})))
            .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// The element's text, `None` while it does not exist.
    async fn text(&self, css: &str) -> Option<String> {
        let v: Value = self
            .http
            .post(format!("{}/element", self.session))
            .json(&json!({"using": "css selector", "value": css}))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let e = v["value"][ELEMENT].as_str()?.to_string();
        let t = self
            .call(reqwest::Method::GET, &format!("/element/{e}/text"), None)
            .await;
        t.as_str().map(str::to_string)
    }
}

fn assets(out: &Path) -> Vec<Value> {
    let m: Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    m["assets"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_approves_rejects_with_a_note_and_bulk_approves_in_headless_chromium() {
    let (Some(chromium), Some(driver)) = (
        on_path("chromium").or_else(|| on_path("chromium-browser")),
        on_path("chromedriver"),
    ) else {
        eprintln!("skipped: chromium and chromedriver are not installed (scripts/test installs Debian's `chromium` and `chromium-driver`)");
        return;
    };
    let dir = temp_dir("review-browser");
    std::fs::write(dir.join("spec.toml"), SPEC).unwrap();
    let o = Command::new(BIN)
        .current_dir(&dir)
        .args(["run", "spec.toml", "--out", "out", "--quiet"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = dir.join("out");
    let by_product = |p: &str| {
        assets(&out).into_iter().find(|a| a["vars"]["product"] == p).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (mug, lamp, chair) = (by_product("mug"), by_product("lamp"), by_product("chair"));

    let mut server = Command::new(BIN)
        .args(["review", out.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _server = Kill(server);
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap()
        .to_string();
    assert!(url.contains("/?token="), "{line}");
    // A test's own client to a browser driver, not a provider backend.
    #[allow(clippy::disallowed_methods)]
    let http = reqwest::Client::new();
    // Without the token, or with another, nothing is served.
    let root = url.split("/?").next().unwrap();
    assert_eq!(http.get(format!("{root}/")).send().await.unwrap().status(), 403);
    assert_eq!(
        http.get(format!("{root}/decisions?token=0000"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );

    let port = free_port();
    let _driver = Kill(
        Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let wd = format!("http://127.0.0.1:{port}");
    until("chromedriver", Duration::from_secs(30), || {
        let http = http.clone();
        let wd = wd.clone();
        async move {
            let v: Value = http.get(format!("{wd}/status")).send().await.ok()?.json().await.ok()?;
            v["value"]["ready"].as_bool().filter(|r| *r)
        }
    })
    .await;
    let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
        "binary": chromium, "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]}}}});
    let v: Value = http
        .post(format!("{wd}/session"))
        .json(&caps)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sid = v["value"]["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no session: {v}"));
    let d = Driver {
        http: http.clone(),
        session: format!("{wd}/session/{sid}"),
    };
    d.call(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    let status = |id: &str| format!("[data-asset=\"{id}\"] .status");
    until("the page to load the decisions", Duration::from_secs(20), || async {
        d.text(&status(&mug)).await.filter(|t| t == "undecided")
    })
    .await;

    // One approval, one rejection with a note.
    d.click(&format!("[data-asset=\"{mug}\"] button.approve")).await;
    d.type_into(&format!("[data-asset=\"{lamp}\"] input.note"), "warmer light")
        .await;
    d.click(&format!("[data-asset=\"{lamp}\"] button.reject")).await;
    until("the rejection on the page", Duration::from_secs(20), || async {
        d.text(&status(&lamp)).await.filter(|t| t == "rejected: warmer light")
    })
    .await;
    // Filter down to the chair, select what is shown, approve it in bulk.
    d.type_into("#filter", "chair").await;
    d.click("#select-all").await;
    d.type_into("#bulk-note", "fine as is").await;
    d.click("#bulk-approve").await;
    until("the bulk approval on the page", Duration::from_secs(20), || async {
        d.text(&status(&chair)).await.filter(|t| t == "approved: fine as is")
    })
    .await;
    let _ = http.delete(d.session.clone()).send().await;

    let held = creative::campaign::review::latest(&creative::campaign::review::read(&out).unwrap());
    assert_eq!(held.len(), 3, "{held:?}");
    use creative::campaign::review::Verdict;
    assert_eq!(held[&mug].verdict, Verdict::Approved);
    assert_eq!(held[&lamp].verdict, Verdict::Rejected);
    assert_eq!(held[&lamp].note.as_deref(), Some("warmer light"));
    assert_eq!(held[&chair].verdict, Verdict::Approved);
    assert_eq!(held[&chair].note.as_deref(), Some("fine as is"));
    assert_eq!(held[&lamp].step, "hero");
    // The manifest records them.
    let lamp_entry = assets(&out).into_iter().find(|a| a["id"] == lamp.as_str()).unwrap();
    assert_eq!(lamp_entry["review"]["verdict"], "rejected");
    let _ = std::fs::remove_dir_all(&dir);
}
