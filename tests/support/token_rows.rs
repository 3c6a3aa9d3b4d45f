//! The token history of a session as PostgreSQL stores it, read with raw SQL (not through the
//! store) so a test sees exactly what is on disk, and the server dropping connections (with
//! the wait for the store circuit that a lost connection opens). Shared by `store_conformance`
//! and `group_commit`.

use chrono::{DateTime, Utc};
use sessiond_actors::ids::SessionId;
use sqlx::Connection;

/// `(generation, token hash, issued at)` of each history row of session `id`, by generation.
pub async fn pg_token_rows(url: &str, id: SessionId) -> Vec<(i64, Vec<u8>, DateTime<Utc>)> {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let rows = sqlx::query_as(
        "SELECT generation, token_hash, issued_at FROM refresh_tokens WHERE session_id = $1 \
         ORDER BY generation",
    )
    .bind(id.as_uuid())
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    rows
}

/// Terminates every connection to the database at `url` but its own, as a server restart or a
/// proxy would, and waits until they are gone; how many there were.
pub async fn pg_drop_connections(url: &str) -> i64 {
    let mut admin = sqlx::PgConnection::connect(url).await.unwrap();
    let cut: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()) t",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    for _ in 0..200 {
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut admin)
        .await
        .unwrap();
        if left == 0 {
            admin.close().await.unwrap();
            return cut;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the terminated connections never went away");
}

/// Waits (up to 10 s) for the store circuit to close again: a connection error opens it, and
/// its probe closes it within a fraction of a second while the database is up.
pub async fn wait_until_circuit_closes(store: &sessiond::store::Store) {
    for _ in 0..400 {
        if !store.circuit_open() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the store circuit never closed");
}
