//! [`OriginStore`] for both databases: the union of the applications' allowed origins. Two
//! statements, because PostgreSQL keeps the list as `text[]` and SQLite as a JSON array.

use async_trait::async_trait;

use super::codec::{pg_err, sqlite_err};
use super::{Inner, Store, StoreError};
use crate::auth::oauth::port::OriginStore;

const PG: &str = "SELECT DISTINCT unnest(allowed_origins) FROM oauth_applications";
const SQLITE: &str = "SELECT DISTINCT json_each.value \
                      FROM oauth_applications, json_each(oauth_applications.allowed_origins)";

#[async_trait]
impl OriginStore for Store {
    async fn allowed_origins(&self) -> Result<Vec<String>, StoreError> {
        self.observed("allowed_origins", async {
            match &self.inner {
                Inner::Postgres(s) => sqlx::query_scalar(PG)
                    .fetch_all(&s.pool)
                    .await
                    .map_err(|e| pg_err("allowed origins", e)),
                Inner::Sqlite(s) => sqlx::query_scalar(SQLITE)
                    .fetch_all(&s.reader)
                    .await
                    .map_err(|e| sqlite_err("allowed origins", e)),
            }
        })
        .await
    }
}
