//! The C ABI's integration tests, one binary: each former `tests/*.rs` file is
//! a module here, so CI links one executable instead of seven.
//!
//! Nothing in them forbids sharing a process: no test counts process-wide
//! state (threads, descriptors), the counters a test keeps are its own
//! statics, the last error is per thread, the host tests build and run their
//! C, C++ and Python hosts as child processes, and `brief` sets only a
//! variable of its own.

mod abi;
mod abi_text;
mod brief;
mod header;
mod hostcalls;
mod hosts;
mod media_abi;
mod out_dir;
