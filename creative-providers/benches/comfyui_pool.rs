//! What placing one prompt on a pool of ComfyUI servers costs: choosing the
//! server with the shortest queue and counting the prompt on it
//! (`Pool::claim`, then dropping the claim), for pools of 1 to 64 servers.
//!
//! `cargo bench -p creative-providers --bench comfyui_pool`

use creative_providers::comfyui::pool::{Pool, Server};
use creative_providers::http::Transport;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

fn pool(n: usize) -> Pool {
    Pool::new(
        (0..n)
            .map(|i| {
                Server::new(
                    Transport::builder("bench", format!("http://10.0.0.{i}:8188"))
                        .build()
                        .unwrap(),
                )
            })
            .collect(),
    )
}

fn claim(c: &mut Criterion) {
    let mut g = c.benchmark_group("comfyui_pool_claim");
    for n in [1usize, 4, 16, 64] {
        let p = pool(n);
        // Half the servers hold a prompt each, so the choice is not trivial.
        let held: Vec<_> = (0..n / 2).filter_map(|_| p.claim(&[])).collect();
        g.bench_with_input(BenchmarkId::from_parameter(n), &p, |b, p| {
            b.iter(|| {
                let c = p.claim(&[]).unwrap();
                std::hint::black_box(c.index)
            })
        });
        drop(held);
    }
    g.finish();
}

criterion_group!(benches, claim);
criterion_main!(benches);
