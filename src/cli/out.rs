//! Standard output that survives `| head`: `println!` panics when the reader
//! has gone (exit 101 in the middle of a dry run); here a closed pipe ends the
//! printing, quietly, and the command still exits with the code of what it did.

use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Write `text` to stdout as is. After the reader has closed the pipe this does
/// nothing; other write errors are reported once on stderr.
pub fn print(text: &str) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != ErrorKind::BrokenPipe {
            eprintln!("error: cannot write to stdout: {e}");
        }
    }
}

/// [`print`] with a newline.
pub fn println(text: &str) {
    let mut line = String::with_capacity(text.len() + 1);
    line.push_str(text);
    line.push('\n');
    print(&line);
}

/// A buffered stdout for long streams (a million-job plan): writes until the
/// pipe closes, then stops.
pub struct Stream {
    out: std::io::BufWriter<std::io::StdoutLock<'static>>,
}

impl Stream {
    /// Lock stdout for a stream of lines.
    pub fn new() -> Self {
        Stream {
            out: std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock()),
        }
    }

    /// Write one line; false when the reader has gone (stop producing).
    pub fn line(&mut self, text: &str) -> bool {
        if CLOSED.load(Ordering::Relaxed) {
            return false;
        }
        let r = self
            .out
            .write_all(text.as_bytes())
            .and_then(|()| self.out.write_all(b"\n"));
        self.check(r)
    }

    /// Flush what is buffered; false when the reader has gone.
    pub fn finish(mut self) -> bool {
        let r = self.out.flush();
        self.check(r)
    }

    fn check(&mut self, r: std::io::Result<()>) -> bool {
        match r {
            Ok(()) => true,
            Err(e) => {
                CLOSED.store(true, Ordering::Relaxed);
                if e.kind() != ErrorKind::BrokenPipe {
                    eprintln!("error: cannot write to stdout: {e}");
                }
                false
            }
        }
    }
}
