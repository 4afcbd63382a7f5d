//! A pool of ComfyUI servers behind one provider (`base_urls`): on one machine
//! (several servers sharing a GPU keep it busy) or many.
//!
//! Each call claims the server with the shortest queue: the larger of the
//! prompts this process has in flight there and the queue length the server
//! last reported (on its websocket, `status.exec_info.queue_remaining`, or in
//! the `GET /queue` a polling call reads; either counts other clients' prompts
//! too, and is believed for [`QUEUE_REPORT_TTL`]); ties go to the server that
//! has had fewer calls. A server that stops answering (a call fails and a `GET
//! /system_stats` probe fails too) is marked down for `server_down_s` and the
//! call's prompt is queued again on another server; a down server is chosen
//! only when every server is down, so a recovered one is found by the next
//! call.
//!
//! What each server did is counted ([`ServerStats`]) and named on every output
//! (`comfyui_server` in the artifact's metadata).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::http::Transport;

/// How long a queue length a server reported is believed.
pub const QUEUE_REPORT_TTL: Duration = Duration::from_secs(10);

/// What one server of a pool has done in this process.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServerStats {
    /// The server's base URL.
    pub base_url: String,
    /// Calls that ran (or began to run) their prompts here.
    pub calls: u64,
    /// Outputs fetched from it.
    pub outputs: u64,
    /// Seconds it spent executing our prompts.
    pub run_s: f64,
    /// Calls that failed here because the server stopped answering.
    pub failures: u64,
    /// Of those, calls whose prompt was queued again on another server.
    pub requeued: u64,
}

/// How loaded one server looks when a prompt is placed (see [`pick`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Prompts this process has queued or running there.
    pub in_flight: u32,
    /// The queue length the server last reported, when it has.
    pub queue: Option<u64>,
    /// Whether it is marked down.
    pub down: bool,
    /// Calls placed there so far (spreads ties).
    pub calls: u64,
}

/// The index of the server a prompt goes to, skipping `skip` (servers this call
/// has given up on): servers that are up before those marked down, then the
/// shortest queue, then the fewest calls, then the first. `None` when every
/// server is skipped.
///
/// ```
/// use creative_providers::comfyui::pool::{pick, Load};
/// let idle = Load { in_flight: 0, queue: None, down: false, calls: 3 };
/// let busy = Load { in_flight: 2, queue: Some(5), down: false, calls: 1 };
/// assert_eq!(pick(&[busy, idle], &[]), Some(1));
/// assert_eq!(pick(&[busy, idle], &[1]), Some(0));
/// ```
pub fn pick(loads: &[Load], skip: &[usize]) -> Option<usize> {
    loads
        .iter()
        .enumerate()
        .filter(|(i, _)| !skip.contains(i))
        .min_by_key(|(i, l)| {
            let queue = u64::from(l.in_flight).max(l.queue.unwrap_or(0));
            (l.down, queue, l.calls, *i)
        })
        .map(|(i, _)| i)
}

/// One server of the pool: its transport, its load and what it has done.
pub struct Server {
    pub(crate) transport: Transport,
    in_flight: AtomicU32,
    /// The queue length the server last reported, and when: a report counts
    /// for [`QUEUE_REPORT_TTL`] (the socket that heard it may have closed since).
    queue: Mutex<Option<(u64, Instant)>>,
    down_until: Mutex<Option<Instant>>,
    stats: Mutex<ServerStats>,
}

impl Server {
    /// A server reached through `transport`, idle and up.
    pub fn new(transport: Transport) -> Server {
        let base_url = transport.base_url().as_str().trim_end_matches('/').to_string();
        Server {
            transport,
            in_flight: AtomicU32::new(0),
            queue: Mutex::new(None),
            down_until: Mutex::new(None),
            stats: Mutex::new(ServerStats {
                base_url,
                ..ServerStats::default()
            }),
        }
    }

    /// The base URL, as outputs name it.
    pub(crate) fn name(&self) -> String {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).base_url.clone()
    }

    /// The queue length the server reported (websocket `status` or `GET /queue`).
    pub(crate) fn set_queue(&self, n: u64) {
        *self.queue.lock().unwrap_or_else(|p| p.into_inner()) = Some((n, Instant::now()));
    }

    /// Mark the server down for `d`.
    pub(crate) fn mark_down(&self, d: Duration) {
        *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + d);
    }

    fn load(&self, now: Instant) -> Load {
        let q = *self.queue.lock().unwrap_or_else(|p| p.into_inner());
        Load {
            in_flight: self.in_flight.load(Ordering::Relaxed),
            queue: q
                .filter(|(_, at)| now.duration_since(*at) < QUEUE_REPORT_TTL)
                .map(|(n, _)| n),
            down: self
                .down_until
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some_and(|t| t > now),
            // Not `stats()`: placing a prompt must not copy every server's URL.
            calls: self.stats.lock().unwrap_or_else(|p| p.into_inner()).calls,
        }
    }

    pub(crate) fn record(&self, f: impl FnOnce(&mut ServerStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// What the server has done so far.
    pub fn stats(&self) -> ServerStats {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The servers, and the lock that makes choosing one and counting the prompt
/// on it one step (so concurrent calls spread out instead of all seeing the
/// same idle server).
pub struct Pool {
    pub(crate) servers: Vec<Server>,
    placing: Mutex<()>,
}

/// A prompt counted on a server until dropped.
pub struct Claim<'a> {
    /// The server.
    pub server: &'a Server,
    /// Its index in the pool.
    pub index: usize,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.server.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Pool {
    /// A pool of `servers`.
    pub fn new(servers: Vec<Server>) -> Pool {
        Pool {
            servers,
            placing: Mutex::new(()),
        }
    }

    /// The servers' names when every one is marked down, `None` when one is
    /// up (or its mark has run out, so it is due to be tried again).
    pub fn all_down(&self) -> Option<Vec<String>> {
        let now = Instant::now();
        self.servers
            .iter()
            .map(|s| s.load(now).down.then(|| s.name()))
            .collect()
    }

    /// Claim the server a prompt goes to (see [`pick`]), skipping `skip`
    /// (indices): the prompt counts on it until the claim is dropped. `None`
    /// when every server is skipped.
    pub fn claim(&self, skip: &[usize]) -> Option<Claim<'_>> {
        let _placing = self.placing.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let loads: Vec<Load> = self.servers.iter().map(|s| s.load(now)).collect();
        let index = pick(&loads, skip)?;
        let server = &self.servers[index];
        server.in_flight.fetch_add(1, Ordering::Relaxed);
        server.record(|s| s.calls += 1);
        Some(Claim { server, index })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(in_flight: u32, queue: Option<u64>, down: bool, calls: u64) -> Load {
        Load {
            in_flight,
            queue,
            down,
            calls,
        }
    }

    #[test]
    fn the_shortest_queue_wins_and_a_reported_queue_counts_other_clients() {
        // Ours: 1 in flight on each; the second server reports 4 queued (others').
        let loads = [load(1, Some(1), false, 0), load(1, Some(4), false, 0)];
        assert_eq!(pick(&loads, &[]), Some(0));
        let loads = [load(3, None, false, 0), load(1, None, false, 9)];
        assert_eq!(pick(&loads, &[]), Some(1));
    }

    #[test]
    fn ties_go_to_the_server_with_fewer_calls_and_down_servers_come_last() {
        let loads = [load(0, None, false, 5), load(0, None, false, 2)];
        assert_eq!(pick(&loads, &[]), Some(1));
        let loads = [load(0, None, true, 0), load(7, None, false, 9)];
        assert_eq!(pick(&loads, &[]), Some(1));
        // Every server down: the least loaded is still tried.
        let loads = [load(2, None, true, 0), load(0, None, true, 0)];
        assert_eq!(pick(&loads, &[]), Some(1));
        assert_eq!(pick(&loads, &[0, 1]), None);
    }

    #[test]
    fn concurrent_claims_spread_over_idle_servers() {
        let t = |u: &str| Transport::builder("p", u).build().unwrap();
        let pool = Pool::new(vec![
            Server::new(t("http://127.0.0.1:1")),
            Server::new(t("http://127.0.0.1:2")),
        ]);
        let a = pool.claim(&[]).unwrap();
        let b = pool.claim(&[]).unwrap();
        assert_ne!(a.index, b.index);
        drop(a);
        let c = pool.claim(&[]).unwrap();
        assert_eq!(c.index, 0, "the freed server is the shortest queue again");
    }
}
