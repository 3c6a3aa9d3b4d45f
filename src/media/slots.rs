//! Admission control for image decoding: the same idea as the password-hashing pool
//! (`crypto::password`) — CPU-bound work runs on the blocking pool, a few jobs at a time, with a
//! short bounded line behind them; anyone beyond the line is refused at once (503) instead of
//! queueing without limit. The async workers never decode anything themselves.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::MediaError;

/// How many images decode at once, and how many uploads may wait for a turn.
#[derive(Clone, Debug)]
pub struct DecodeSlots {
    /// Held while waiting or running: its size is `running + waiting`, so `try_acquire`
    /// failing means the line is full.
    admitted: Arc<Semaphore>,
    /// Held while running.
    running: Arc<Semaphore>,
}

impl DecodeSlots {
    /// At most `concurrency` (at least 1) decodes at a time and `queue` uploads waiting.
    pub fn new(concurrency: usize, queue: usize) -> Self {
        let concurrency = concurrency.max(1);
        Self {
            admitted: Arc::new(Semaphore::new(concurrency + queue)),
            running: Arc::new(Semaphore::new(concurrency)),
        }
    }

    /// Half the cores (at least one), so decoding never takes every core from password hashing
    /// and request handling; eight waiting.
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::new(cores / 2, 8)
    }

    /// Runs `job` on the blocking pool once a slot is free; [`MediaError::Busy`] at once when
    /// the line is full. A cancelled caller leaves the line (the permits are dropped); a job
    /// already running finishes on its thread and frees its slot then.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, MediaError> {
        let admitted = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| MediaError::Busy)?;
        let running = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| MediaError::Busy)?;
        tokio::task::spawn_blocking(move || {
            let _slots = (admitted, running);
            job()
        })
        .await
        .map_err(|e| MediaError::Internal(format!("image job failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn beyond_the_running_and_waiting_jobs_a_caller_is_refused_at_once() {
        let slots = DecodeSlots::new(1, 1);
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (started, is_running) = tokio::sync::oneshot::channel();
        let running = {
            let slots = slots.clone();
            tokio::spawn(async move {
                slots
                    .run(move || {
                        started.send(()).unwrap();
                        wait.recv().unwrap();
                    })
                    .await
            })
        };
        is_running.await.unwrap();
        let waiting = {
            let slots = slots.clone();
            tokio::spawn(async move { slots.run(|| 2).await })
        };
        // The waiter holds the line's one place once it has been polled.
        while slots.admitted.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(slots.run(|| 3).await, Err(MediaError::Busy)));
        release.send(()).unwrap();
        running.await.unwrap().unwrap();
        assert_eq!(waiting.await.unwrap().unwrap(), 2);
        assert_eq!(slots.run(|| 4).await.unwrap(), 4);
    }
}
