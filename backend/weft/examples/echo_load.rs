//! A load generator for an echo server: `CONNS` connections, each sending a 64-byte
//! message and waiting for it back, over and over, for `SECS` seconds, on one thread.
//! Prints the round trips completed and their rate.
//!
//! `cargo run --release --example echo_load -- 127.0.0.1:8000 32 5`

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn main() {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .and_then(|a| a.parse().ok())
        .expect("usage: echo_load ADDR [CONNS] [SECS]");
    let conns: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let done = Rc::new(Cell::new(0u64));
    let local = tokio::task::LocalSet::new();
    let until = Instant::now() + Duration::from_secs(secs);
    for _ in 0..conns {
        let done = done.clone();
        local.spawn_local(async move {
            let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
                eprintln!("cannot connect to {addr}");
                return;
            };
            let _ = stream.set_nodelay(true);
            let message = [b'x'; 64];
            let mut back = [0u8; 64];
            while Instant::now() < until {
                if stream.write_all(&message).await.is_err()
                    || stream.read_exact(&mut back).await.is_err()
                {
                    return;
                }
                done.set(done.get() + 1);
            }
        });
    }
    let started = Instant::now();
    runtime.block_on(local);
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "round_trips {} secs {elapsed:.3} per_sec {:.0}",
        done.get(),
        done.get() as f64 / elapsed
    );
}
