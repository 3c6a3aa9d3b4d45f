//! A minimal axum hello-world server: the limits harness measures it with the same load tool and
//! connection count as sessiond, to get the cost of one HTTP exchange on this machine.
//!
//! `bench_hello [ADDR]` (default 127.0.0.1:18080); runs until killed.

use axum::Router;
use axum::routing::get;

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".to_owned());
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        println!("listening on {}", listener.local_addr()?);
        let app = Router::new().route("/", get(|| async { "hello, world" }));
        axum::serve(listener, app).await
    })
}
