//! Keyset pagination, shared by every list endpoint: `?cursor=&limit=` in, `next_cursor` out.
//!
//! Rows are listed newest first by their UUIDv7 id, so "the page after" is "ids below the last
//! id of this page". The cursor is opaque to clients (today the base64url of that id), which
//! leaves room to change it without breaking them.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::http::error::ApiError;

/// Page size when the client names none.
pub const DEFAULT_LIMIT: u32 = 20;
/// Largest page a client may ask for.
pub const MAX_LIMIT: u32 = 100;

/// The query string of a list endpoint, as documented in OpenAPI (`params(PageQuery)`).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1–100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

/// A validated page request: at most `limit` rows whose id is below `before`.
/// As an extractor it answers 400 `invalid_request` for a bad cursor or query string and 422
/// `validation_failed` (field `limit`) for a bad limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    /// The last id of the previous page, if any.
    pub before: Option<Uuid>,
    /// Rows per page.
    pub limit: u32,
}

impl<S: Send + Sync> FromRequestParts<S> for Page {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(query) = Query::<PageQuery>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::InvalidRequest("invalid query string".into()))?;
        let limit = match query.limit.as_deref() {
            None => DEFAULT_LIMIT,
            Some(raw) => match raw.parse::<u32>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ApiError::field(
                        "limit",
                        format!("must be an integer from 1 to {MAX_LIMIT}"),
                    ));
                }
            },
        };
        let before = query.cursor.as_deref().map(decode_cursor).transpose()?;
        Ok(Self { before, limit })
    }
}

impl Page {
    /// How many rows to fetch: one more than the page, to learn whether another page follows.
    pub fn fetch_limit(&self) -> u32 {
        self.limit + 1
    }

    /// Loads one page: `fetch` gets the cursor's id and how many rows to ask for (one more
    /// than the page); the answer is the page's rows and the next page's cursor.
    pub async fn load<T, E, F>(
        &self,
        fetch: impl FnOnce(Option<Uuid>, u32) -> F,
        id: impl Fn(&T) -> Uuid,
    ) -> Result<(Vec<T>, Option<String>), E>
    where
        F: Future<Output = Result<Vec<T>, E>>,
    {
        let mut rows = fetch(self.before, self.fetch_limit()).await?;
        let next_cursor = self.finish(&mut rows, id);
        Ok((rows, next_cursor))
    }

    /// Cuts rows fetched with [`Page::fetch_limit`] down to the page and returns the cursor of
    /// the next page (None on the last page).
    pub fn finish<T>(&self, rows: &mut Vec<T>, id: impl Fn(&T) -> Uuid) -> Option<String> {
        if rows.len() > self.limit as usize {
            rows.truncate(self.limit as usize);
            rows.last().map(|row| encode_cursor(id(row)))
        } else {
            None
        }
    }
}

fn encode_cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

fn decode_cursor(cursor: &str) -> Result<Uuid, ApiError> {
    let bad = || ApiError::InvalidRequest("invalid cursor".into());
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let bytes: [u8; 16] = bytes.try_into().map_err(|_| bad())?;
    Ok(Uuid::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let id = Uuid::now_v7();
        assert_eq!(decode_cursor(&encode_cursor(id)).unwrap(), id);
        for bad in ["", "!!", "AAAA", &"A".repeat(200)] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn finish_cuts_the_extra_row_and_points_at_the_last_kept_one() {
        let page = Page {
            before: None,
            limit: 2,
        };
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let mut rows = ids.clone();
        let next = page.finish(&mut rows, |id| *id);
        assert_eq!(rows, ids[..2]);
        assert_eq!(next, Some(encode_cursor(ids[1])));
        let mut short = ids[..2].to_vec();
        assert_eq!(page.finish(&mut short, |id| *id), None);
        assert_eq!(short.len(), 2);
    }
}
