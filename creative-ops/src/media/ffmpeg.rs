//! Finding ffmpeg and ffprobe, and running them with progress and cancellation.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use creative_core::cancel::CancellationToken;

use crate::error::OpsError;

/// The environment variable that names the ffmpeg binary to use instead of the
/// one on `PATH`.
pub const ENV_FFMPEG: &str = "CREATIVE_FFMPEG";
/// The environment variable that names the ffprobe binary; without it ffprobe is
/// looked for beside the configured ffmpeg, then on `PATH`.
pub const ENV_FFPROBE: &str = "CREATIVE_FFPROBE";

/// How much of a failing tool's error output an error keeps (its last lines say why).
const STDERR_TAIL: usize = 1500;

/// The ffmpeg and ffprobe binaries the media steps and gates run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ffmpeg {
    ffmpeg: PathBuf,
    ffprobe: PathBuf,
}

/// What a run reports and obeys: the cancellation token and an optional
/// progress callback.
pub struct Control<'a> {
    /// Cancelling it kills the running tool.
    pub cancel: &'a CancellationToken,
    /// Called with (microseconds of output written, microseconds expected)
    /// as ffmpeg reports them, every 0.2 s: always moving forward, never past
    /// the expected total, and ending at it when the run succeeds. Only for
    /// runs that write to files.
    pub progress: Option<&'a (dyn Fn(u64, u64) + Send + Sync)>,
    /// The expected output duration in microseconds (0 when unknown).
    pub total_us: u64,
}

impl<'a> Control<'a> {
    /// Cancellation only, no progress.
    pub fn cancel_only(cancel: &'a CancellationToken) -> Self {
        Control {
            cancel,
            progress: None,
            total_us: 0,
        }
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

fn configured(tool: &'static str, var: &str, value: OsString) -> Result<PathBuf, OpsError> {
    let p = PathBuf::from(value);
    if p.is_file() {
        Ok(p)
    } else {
        Err(OpsError::Tool {
            tool,
            message: format!("{var} names `{}`, which is not a file", p.display()),
        })
    }
}

fn not_found(tool: &'static str, var: &str) -> OpsError {
    let path = std::env::var("PATH").unwrap_or_default();
    OpsError::Tool {
        tool,
        message: format!(
            "not found: set {var} to its path or install it (Debian: apt-get install ffmpeg); looked in PATH={path}"
        ),
    }
}

impl Ffmpeg {
    /// The binaries named by `CREATIVE_FFMPEG` / `CREATIVE_FFPROBE`, else ffprobe
    /// beside the configured ffmpeg, else both on `PATH`. The error names the
    /// missing tool and where it was looked for.
    pub fn locate() -> Result<Self, OpsError> {
        let ffmpeg = match std::env::var_os(ENV_FFMPEG) {
            Some(v) => configured("ffmpeg", ENV_FFMPEG, v)?,
            None => on_path("ffmpeg").ok_or_else(|| not_found("ffmpeg", ENV_FFMPEG))?,
        };
        let ffprobe = match std::env::var_os(ENV_FFPROBE) {
            Some(v) => configured("ffprobe", ENV_FFPROBE, v)?,
            None => {
                let beside = ffmpeg.with_file_name(format!("ffprobe{}", std::env::consts::EXE_SUFFIX));
                if beside.is_file() {
                    beside
                } else {
                    on_path("ffprobe").ok_or_else(|| not_found("ffprobe", ENV_FFPROBE))?
                }
            }
        };
        Ok(Ffmpeg { ffmpeg, ffprobe })
    }

    /// Given binaries; each must be a file.
    pub fn at(ffmpeg: impl Into<PathBuf>, ffprobe: impl Into<PathBuf>) -> Result<Self, OpsError> {
        let (ffmpeg, ffprobe) = (ffmpeg.into(), ffprobe.into());
        for (tool, p) in [("ffmpeg", &ffmpeg), ("ffprobe", &ffprobe)] {
            if !p.is_file() {
                return Err(OpsError::Tool {
                    tool,
                    message: format!("`{}` is not a file", p.display()),
                });
            }
        }
        Ok(Ffmpeg { ffmpeg, ffprobe })
    }

    /// The ffmpeg binary.
    pub fn ffmpeg_path(&self) -> &Path {
        &self.ffmpeg
    }

    /// The ffprobe binary.
    pub fn ffprobe_path(&self) -> &Path {
        &self.ffprobe
    }

    /// Run ffmpeg with `args` (after `-hide_banner -nostdin -y`) and return what
    /// it wrote to standard output. With a progress callback, ffmpeg's progress
    /// report takes standard output, so the outputs must be files.
    pub async fn run<I, S>(&self, args: I, ctl: &Control<'_>) -> Result<Vec<u8>, OpsError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut head: Vec<OsString> = ["-hide_banner", "-nostdin", "-y", "-loglevel", "error"]
            .iter()
            .map(OsString::from)
            .collect();
        if ctl.progress.is_some() {
            // A report every 0.2 s rather than ffmpeg's 0.5: short encodes
            // still show movement.
            head.extend(
                ["-progress", "pipe:1", "-nostats", "-stats_period", "0.2"]
                    .iter()
                    .map(OsString::from),
            );
        }
        head.extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        run_tool("ffmpeg", &self.ffmpeg, head, ctl).await
    }

    /// Run ffprobe with `args` and return its standard output.
    pub async fn run_probe<I, S>(&self, args: I, cancel: &CancellationToken) -> Result<Vec<u8>, OpsError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args = args.into_iter().map(|a| a.as_ref().to_os_string()).collect();
        run_tool("ffprobe", &self.ffprobe, args, &Control::cancel_only(cancel)).await
    }
}

/// Spawn `bin` in its own process group (so a terminal's Ctrl-C reaches the
/// host, which cancels in order, rather than killing ffmpeg mid-write), collect
/// its output, and kill it when `ctl.cancel` fires or the future is dropped.
async fn run_tool(tool: &'static str, bin: &Path, args: Vec<OsString>, ctl: &Control<'_>) -> Result<Vec<u8>, OpsError> {
    if ctl.cancel.is_cancelled() {
        return Err(OpsError::Cancelled);
    }
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    cmd.process_group(0);
    let mut child = cmd.spawn().map_err(|e| OpsError::Tool {
        tool,
        message: format!("cannot start `{}`: {e}", bin.display()),
    })?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let progress = ctl.progress;
    let total = ctl.total_us;
    let read_out = async move {
        let (mut out, mut behind) = (Vec::new(), false);
        match progress {
            Some(report) => {
                // Reports only move forward and stop at the total: ffmpeg repeats
                // a time while it flushes, and its last time can pass the
                // expected total by a frame.
                let mut last = 0u64;
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    // ffmpeg also writes `out_time_ms`, in microseconds too (a
                    // misnomer it keeps): one name is enough.
                    if let Some(v) = line.strip_prefix("out_time_us=") {
                        let Ok(us) = v.trim().parse::<u64>() else { continue };
                        let us = if total > 0 { us.min(total) } else { us };
                        if us > last {
                            last = us;
                            report(us, total);
                        }
                    }
                }
                // Short of the total (the last report came before the end):
                // said once the run has succeeded, below.
                behind = total > last;
            }
            None => {
                let _ = stdout.read_to_end(&mut out).await;
            }
        }
        (out, behind)
    };
    let read_err = async move {
        let mut err = Vec::new();
        let _ = stderr.read_to_end(&mut err).await;
        err
    };
    let finished = tokio::select! {
        biased;
        _ = ctl.cancel.cancelled() => None,
        r = async { tokio::join!(read_out, read_err, child.wait()) } => Some(r),
    };
    let Some(((out, behind), err, status)) = finished else {
        // The reads are dropped with the select; kill the child and reap it.
        let _ = child.start_kill();
        let _ = child.wait().await;
        return Err(OpsError::Cancelled);
    };
    let status = status.map_err(|e| OpsError::Tool {
        tool,
        message: format!("waiting for `{}`: {e}", bin.display()),
    })?;
    if !status.success() {
        let text = String::from_utf8_lossy(&err);
        let text = text.trim();
        let tail = match text.char_indices().rev().nth(STDERR_TAIL) {
            Some((i, _)) => &text[i..],
            None => text,
        };
        return Err(OpsError::Tool {
            tool,
            message: format!("exited with {status}: {tail}"),
        });
    }
    if let (Some(report), true) = (progress, behind) {
        // Finished: all of the expected output is written.
        report(total, total);
    }
    Ok(out)
}

/// A scratch directory for a tool's input and output files, removed on drop.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    /// A new, empty directory under the system's temporary directory.
    pub fn new() -> Result<Self, OpsError> {
        let dir = tempfile::Builder::new()
            .prefix("creative-media-")
            .tempdir()
            .map_err(|e| OpsError::File {
                path: std::env::temp_dir().display().to_string(),
                message: format!("cannot create a scratch directory: {e}"),
            })?;
        Ok(Scratch { dir })
    }

    /// The path of `name` inside it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Write `data` to `name` and return its path.
    pub async fn write(&self, name: &str, data: &[u8]) -> Result<PathBuf, OpsError> {
        let p = self.path(name);
        tokio::fs::write(&p, data).await.map_err(|e| OpsError::File {
            path: p.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(p)
    }

    /// Read `name` back.
    pub async fn read(&self, name: &str) -> Result<Vec<u8>, OpsError> {
        let p = self.path(name);
        tokio::fs::read(&p).await.map_err(|e| OpsError::File {
            path: p.display().to_string(),
            message: e.to_string(),
        })
    }
}
