//! The facade's and the `creative` binary's integration tests, one binary:
//! each former `tests/*.rs` file is a module here, so CI links one executable
//! instead of one per file. Tests that need a tool the machine lacks (the Open
//! Job Description CLI, Chromium, Blender) fail or skip on their own without
//! stopping the others.
//!
//! Three files stay binaries of their own, because the load of the other
//! tests running beside them in one process changes what they measure:
//! `scale.rs` runs 2,000- and 20,000-job campaigns to bound peak memory and
//! loads the machine while it does; `delivery.rs` cancels a run at the moment a
//! webhook hangs and expects every other asset delivered by then; `gc.rs`
//! kills a run while it holds its folder and reads the store it left.

mod common;

mod advise;
mod bounds_cli;
mod brief;
mod chaining;
mod cli;
mod comfyui_example;
mod examples;
mod farm;
mod fuzz_inputs;
mod judge_money;
mod media_report;
mod presets;
mod provenance;
mod report;
mod resume;
mod resume_kills;
mod review_browser;
mod review_resume;
mod runner;
mod shards;
mod signals;
mod spec_errors;
mod spec_mutations;
mod spec_ranges;
mod video_spot;
mod webhooks;
