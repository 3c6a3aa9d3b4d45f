//! The token history of a session as PostgreSQL stores it, read with raw SQL (not through the
//! store) so a test sees exactly what is on disk. Shared by `store_conformance` and
//! `group_commit`.

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
