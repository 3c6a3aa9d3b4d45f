//! argon2id hashes per second at the configured parameters on all cores: the cost of one login.
//!
//! Reads the parameters the way sessiond does (`SESSIOND_ARGON2_MEMORY_KIB`, `_ITERATIONS`,
//! `_PARALLELISM`, or `sessiond.toml`), runs one hashing thread per core for `SECONDS`
//! (default 10), and prints one JSON object.
//!
//! `bench_argon2 [SECONDS]`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use argon2::password_hash::PasswordHasher as _;
use argon2::{Algorithm, Argon2, Params, Version};
use sessiond::config::Config;

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("SECONDS must be a number"))
        .unwrap_or(10.0);
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("invalid configuration:\n{e}");
            std::process::exit(2);
        }
    };
    let params = Params::new(
        config.argon2_memory_kib,
        config.argon2_iterations,
        config.argon2_parallelism,
        None,
    )
    .expect("valid argon2 parameters");
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (done, stop, params) = (done.clone(), stop.clone(), params.clone());
            std::thread::spawn(move || {
                let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
                while !stop.load(Ordering::Relaxed) {
                    argon2
                        .hash_password(b"correct horse battery staple")
                        .expect("argon2id hash");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("hashing thread");
    }
    // Hashes that finished after the stop flag still count: divide by the real elapsed time.
    let elapsed = start.elapsed().as_secs_f64();
    let hashes = done.load(Ordering::Relaxed);
    println!(
        "{{\"hashes\":{hashes},\"seconds\":{elapsed:.3},\"hashes_per_s\":{:.2},\"threads\":{threads},\
         \"m_cost_kib\":{},\"t_cost\":{},\"p_cost\":{}}}",
        hashes as f64 / elapsed,
        config.argon2_memory_kib,
        config.argon2_iterations,
        config.argon2_parallelism
    );
}
