//! The limits harness's own load generator (example `bench_load`), for what wrk and oha cannot
//! do: a durable refresh presents a single-use token, so each request must carry the token the
//! previous answer for that session returned; and the two-instance run must spread every
//! session's requests over two servers.
//!
//! ```text
//! bench_load --kind refresh|me --seed FILE --target HOST:PORT [--target HOST:PORT]
//!            [--connections 16] [--duration 30] [--rate 0] [--spread random|session]
//!            [--out FILE]
//! ```
//!
//! - `--rate 0` (default): closed loop, as wrk: each connection sends its next request when the
//!   previous answer arrived. Latency is measured from the send.
//! - `--rate R`: open loop at R requests/s in total, each connection at R / connections on a
//!   fixed schedule (staggered between connections). Latency is measured from the time the
//!   schedule meant the request to go out, not from when it went out, so a slow answer that
//!   delays the requests behind it counts against them too (coordinated omission corrected,
//!   as wrk2 and oha's `--latency-correction` do). The service time (from the actual send) is
//!   reported beside it.
//! - Several `--target`s: every connection holds one connection to each and picks one at random
//!   for every request, as a round-robin load balancer in front of many clients does: a
//!   session's consecutive refreshes land on different instances half of the time. With
//!   `--spread session`, the target is picked by a hash of the session id in the refresh token
//!   (of the whole token for `/me`) instead, as a load balancer with affinity on the session
//!   does: a session's requests always reach the same instance.
//!
//! Each connection is an OS thread with a blocking socket, which sleeps with the kernel's
//! high-resolution timers (an async runtime's 1 ms timer wheel would add up to 1 ms of
//! scheduling delay to every corrected latency). Seeded sessions are split between connections
//! (line i to connection i mod N); a refresh connection keeps a FIFO of its sessions' newest
//! tokens, so no token is presented twice. Prints one JSON object (and writes it to `--out`).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Refresh,
    Me,
}

struct Options {
    kind: Kind,
    seed: String,
    targets: Vec<String>,
    connections: usize,
    duration: Duration,
    rate: f64,
    spread: Spread,
    out: Option<String>,
}

/// How a request picks one of several targets.
#[derive(Clone, Copy, PartialEq)]
enum Spread {
    /// At random, per request (round robin as many clients see it).
    Random,
    /// By the session: always the same target for one session (load-balancer affinity).
    Session,
}

impl Spread {
    /// The `--spread` value, as the report names it.
    fn as_str(self) -> &'static str {
        match self {
            Self::Random => "random",
            Self::Session => "session",
        }
    }
}

fn options() -> Options {
    let mut o = Options {
        kind: Kind::Me,
        seed: String::new(),
        targets: Vec::new(),
        connections: 16,
        duration: Duration::from_secs(30),
        rate: 0.0,
        spread: Spread::Random,
        out: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--kind" => {
                o.kind = match value.as_str() {
                    "refresh" => Kind::Refresh,
                    "me" => Kind::Me,
                    other => panic!("--kind {other:?}: use refresh or me"),
                }
            }
            "--seed" => o.seed = value,
            "--target" => o.targets.push(value),
            "--connections" => o.connections = value.parse().expect("--connections"),
            "--duration" => {
                o.duration = Duration::from_secs_f64(value.parse().expect("--duration"))
            }
            "--rate" => o.rate = value.parse().expect("--rate"),
            "--spread" => {
                o.spread = [Spread::Random, Spread::Session]
                    .into_iter()
                    .find(|s| s.as_str() == value)
                    .unwrap_or_else(|| panic!("--spread {value:?}: use random or session"))
            }
            "--out" => o.out = Some(value),
            other => panic!("unknown argument {other:?}"),
        }
        i += 2;
    }
    assert!(!o.seed.is_empty(), "--seed FILE is required");
    assert!(!o.targets.is_empty(), "--target HOST:PORT is required");
    assert!(o.connections > 0, "--connections must be positive");
    o
}

/// The value of `"key":"..."` in a JSON text (the seed lines and the token answers are flat
/// JSON objects whose strings need no unescaping).
fn json_string<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let at = text.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = text[at..].trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    Some(&rest[..rest.find('"')?])
}

/// One HTTP/1.1 keep-alive connection with a reusable read buffer.
struct Conn {
    addr: String,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

/// An answer: status and body.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Conn {
    fn new(addr: &str) -> Self {
        Self {
            addr: addr.to_owned(),
            stream: None,
            buf: Vec::with_capacity(16 * 1024),
        }
    }

    fn exchange(&mut self, request: &[u8]) -> std::io::Result<Answer> {
        if self.stream.is_none() {
            let s = TcpStream::connect(&self.addr)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            self.stream = Some(s);
        }
        let result = self.try_exchange(request);
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    fn try_exchange(&mut self, request: &[u8]) -> std::io::Result<Answer> {
        let stream = self.stream.as_mut().expect("connected");
        stream.write_all(request)?;
        self.buf.clear();
        let mut chunk = [0u8; 8192];
        let (head_end, length, close) = loop {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..i])
                    .map_err(|_| std::io::Error::other("head is not UTF-8"))?
                    .to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .ok_or_else(|| std::io::Error::other("answer without content-length"))?;
                let close = head.lines().any(|l| l == "connection: close");
                break (i + 4, length, close);
            }
        };
        while self.buf.len() < head_end + length {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        let status = std::str::from_utf8(&self.buf[9..12])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other("no status"))?;
        let body = self.buf[head_end..head_end + length].to_vec();
        if close {
            self.stream = None;
        }
        Ok(Answer { status, body })
    }
}

/// What one connection measured.
#[derive(Default)]
struct Tally {
    ok: u64,
    status_errors: u64,
    io_errors: u64,
    starved: u64,
    /// Latency per answered request, µs (from the intended time in open loop).
    latency_us: Vec<u32>,
    /// From the actual send, µs.
    service_us: Vec<u32>,
    /// Requests sent later than scheduled by more than 1 ms (open loop).
    late: u64,
}

fn request(kind: Kind, host: &str, token: &str) -> Vec<u8> {
    match kind {
        Kind::Refresh => {
            let body = format!("{{\"refresh_token\":\"{token}\"}}");
            format!(
                "POST /v1/auth/tokens/refresh HTTP/1.1\r\nHost: {host}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        }
        Kind::Me => format!(
            "GET /v1/auth/me HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        .into_bytes(),
    }
}

/// A small xorshift: which target a request goes to.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// FNV-1a of the session id in a refresh token (`rt1_<session id>_<secret>`), or of the whole
/// token when it is not one: the same value for every token of one session.
fn session_hash(token: &str) -> u64 {
    let key = token
        .strip_prefix("rt1_")
        .and_then(|rest| rest.split('_').next())
        .unwrap_or(token);
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[allow(clippy::too_many_arguments)]
fn connection(
    index: usize,
    kind: Kind,
    spread: Spread,
    targets: &[String],
    mut tokens: VecDeque<String>,
    start: Instant,
    end: Instant,
    interval: Option<Duration>,
    stagger: Duration,
) -> Tally {
    let mut conns: Vec<Conn> = targets.iter().map(|t| Conn::new(t)).collect();
    let mut tally = Tally::default();
    let mut random =
        0x9E37_79B9_7F4A_7C15u64 ^ (index as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let mut k: u32 = 0;
    loop {
        let intended = match interval {
            Some(every) => {
                let at = start + stagger + every * k;
                k += 1;
                if at >= end {
                    break;
                }
                let now = Instant::now();
                if at > now {
                    std::thread::sleep(at - now);
                } else if now - at > Duration::from_millis(1) {
                    tally.late += 1;
                }
                at
            }
            None => {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                now
            }
        };
        let Some(token) = tokens.pop_front() else {
            tally.starved += 1;
            if interval.is_none() {
                break;
            }
            continue;
        };
        let target = match spread {
            _ if conns.len() == 1 => 0,
            Spread::Random => (next_random(&mut random) % conns.len() as u64) as usize,
            Spread::Session => (session_hash(&token) % conns.len() as u64) as usize,
        };
        let conn = &mut conns[target];
        let req = request(kind, &conn.addr, &token);
        let sent = Instant::now();
        match conn.exchange(&req) {
            Ok(answer) => {
                let done = Instant::now();
                tally
                    .latency_us
                    .push((done - intended).as_micros().min(u32::MAX as u128) as u32);
                tally
                    .service_us
                    .push((done - sent).as_micros().min(u32::MAX as u128) as u32);
                let good = answer.status == 200;
                if good {
                    tally.ok += 1;
                } else {
                    tally.status_errors += 1;
                }
                match kind {
                    Kind::Me => tokens.push_back(token),
                    Kind::Refresh => {
                        // The child token replaces the spent one; without it the session is
                        // out of this run.
                        let body = String::from_utf8_lossy(&answer.body);
                        if let Some(child) = json_string(&body, "refresh_token").filter(|_| good) {
                            tokens.push_back(child.to_owned());
                        }
                    }
                }
            }
            Err(_) => {
                tally.io_errors += 1;
                if kind == Kind::Me {
                    tokens.push_back(token);
                }
            }
        }
    }
    tally
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

fn summary(sorted: &[u32]) -> String {
    let f = |v: f64| {
        if v.is_nan() {
            "null".to_owned()
        } else {
            format!("{v:.3}")
        }
    };
    format!(
        "{{\"p50\":{},\"p90\":{},\"p99\":{},\"p99_9\":{},\"max\":{}}}",
        f(percentile(sorted, 50.0)),
        f(percentile(sorted, 90.0)),
        f(percentile(sorted, 99.0)),
        f(percentile(sorted, 99.9)),
        f(percentile(sorted, 100.0))
    )
}

fn main() {
    let o = options();
    let field = match o.kind {
        Kind::Refresh => "refresh_token",
        Kind::Me => "access_token",
    };
    let mut per_conn: Vec<VecDeque<String>> = vec![VecDeque::new(); o.connections];
    let file = std::fs::File::open(&o.seed).expect("seed file");
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.expect("seed line");
        if let Some(v) = json_string(&line, field) {
            per_conn[i % o.connections].push_back(v.to_owned());
        }
    }
    assert!(
        per_conn.iter().all(|q| !q.is_empty()),
        "fewer seeded sessions than connections"
    );
    let interval = (o.rate > 0.0).then(|| Duration::from_secs_f64(o.connections as f64 / o.rate));
    let start = Instant::now() + Duration::from_millis(50);
    let end = start + o.duration;
    let handles: Vec<_> = per_conn
        .into_iter()
        .enumerate()
        .map(|(i, tokens)| {
            let targets = o.targets.clone();
            let kind = o.kind;
            let spread = o.spread;
            // Connection i starts i/N of an interval late, so the total is evenly spread.
            let stagger = interval.map_or(Duration::ZERO, |every| {
                every.mul_f64(i as f64 / o.connections as f64)
            });
            std::thread::spawn(move || {
                connection(
                    i, kind, spread, &targets, tokens, start, end, interval, stagger,
                )
            })
        })
        .collect();
    let mut all = Tally::default();
    for h in handles {
        let t = h.join().expect("connection thread");
        all.ok += t.ok;
        all.status_errors += t.status_errors;
        all.io_errors += t.io_errors;
        all.starved += t.starved;
        all.late += t.late;
        all.latency_us.extend(t.latency_us);
        all.service_us.extend(t.service_us);
    }
    let seconds = (Instant::now().min(end + Duration::from_secs(10)) - start).as_secs_f64();
    let seconds = seconds.max(o.duration.as_secs_f64());
    all.latency_us.sort_unstable();
    all.service_us.sort_unstable();
    let answered = all.latency_us.len() as u64;
    let out = format!(
        "{{\"kind\":\"{}\",\"targets\":{},\"spread\":\"{}\",\"connections\":{},\"mode\":\"{}\",\"rate_offered\":{},\
         \"seconds\":{seconds:.3},\"requests\":{},\"ok\":{},\"ok_per_s\":{:.2},\
         \"errors\":{{\"status\":{},\"io\":{},\"starved\":{}}},\"sent_late_over_1ms\":{},\
         \"latency_ms\":{},\"service_ms\":{}}}\n",
        if o.kind == Kind::Refresh {
            "refresh"
        } else {
            "me"
        },
        o.targets.len(),
        o.spread.as_str(),
        o.connections,
        if interval.is_some() {
            "fixed_rate_corrected"
        } else {
            "closed_loop"
        },
        if o.rate > 0.0 {
            format!("{:.2}", o.rate)
        } else {
            "null".into()
        },
        answered + all.io_errors,
        all.ok,
        all.ok as f64 / seconds,
        all.status_errors,
        all.io_errors,
        all.starved,
        all.late,
        summary(&all.latency_us),
        summary(&all.service_us),
    );
    if let Some(path) = &o.out {
        std::fs::write(path, &out).expect("writing --out");
    }
    print!("{out}");
}
