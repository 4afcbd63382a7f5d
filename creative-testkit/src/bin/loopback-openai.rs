//! `loopback-openai`: the testkit's OpenAI images server as a process (see the crate docs).

use std::process::ExitCode;

fn main() -> ExitCode {
    match creative_testkit::parse_args(std::env::args().skip(1)).and_then(creative_testkit::run_cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}
