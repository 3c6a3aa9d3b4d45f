//! Background deletion of ended sessions (and of expired mailed codes and orphaned images).
//!
//! Ended sessions (revoked, compromised or past their absolute expiry) are kept for a retention
//! period so support and audit can still see them, then deleted with their token history so the
//! tables do not grow without bound. Purging is idempotent and safe to run from several
//! instances at once: each run deletes whatever has aged out.

use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::Store;
use crate::media::MediaStore;

/// Spawns the purge loop: every `every` (starting immediately), deletes sessions that ended
/// more than `retention` ago, and logs how many.
///
/// The loop stops when `shutdown` becomes `true` or its sender is dropped; await the returned
/// handle to know it has stopped (a purge in progress finishes first). A failed run is logged
/// and retried at the next tick: the service keeps working without purging.
pub fn spawn_purge(
    store: Store,
    every: Duration,
    retention: chrono::Duration,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // Prefer stopping over starting another run.
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
                _ = ticker.tick() => {
                    if *shutdown.borrow() {
                        break;
                    }
                    let cutoff = Utc::now() - retention;
                    match store.purge_ended(cutoff).await {
                        Ok(0) => tracing::debug!(
                            backend = store.backend().as_str(),
                            "purge: nothing to delete"
                        ),
                        Ok(n) => tracing::info!(
                            backend = store.backend().as_str(),
                            sessions = n,
                            %cutoff,
                            "purged ended sessions"
                        ),
                        Err(error) => tracing::warn!(
                            backend = store.backend().as_str(),
                            %error,
                            "purge of ended sessions failed; will retry"
                        ),
                    }
                    // Mailed one-time codes that expired as long ago (crate::codes), but
                    // never any the daily code limit still counts (created in the last 24 h).
                    let codes_cutoff = cutoff.min(Utc::now() - crate::codes::DAILY_WINDOW);
                    match store.purge_verification_codes(codes_cutoff).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(codes = n, cutoff = %codes_cutoff, "purged expired codes"),
                        Err(error) => tracing::warn!(
                            %error,
                            "purge of expired codes failed; will retry"
                        ),
                    }
                    // Uploaded images nothing points at any more (crate::media), once their
                    // grace period has passed.
                    let media_cutoff = Utc::now() - crate::media::ORPHAN_GRACE;
                    match store.purge_orphaned_media(media_cutoff).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(images = n, "purged orphaned images"),
                        Err(error) => tracing::warn!(
                            %error,
                            "purge of orphaned images failed; will retry"
                        ),
                    }
                }
            }
        }
        tracing::debug!("purge task stopped");
    })
}
