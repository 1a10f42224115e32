//! The stop signal every long-running task holds: the loop asks whether to stop, and
//! any wait it does (a backoff, an idle queue) ends early when the signal comes.

use std::time::Duration;

use tokio::sync::watch;

/// Sends the stop signal to every [`Shutdown`] made from it.
#[derive(Debug)]
pub struct Stopper(watch::Sender<bool>);

/// A task's view of the stop signal. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Stopper {
    /// A new signal, not given yet.
    pub fn new() -> (Stopper, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (Stopper(tx), Shutdown(rx))
    }

    /// Another receiver of this signal.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }

    /// Gives the signal (idempotent).
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// Whether the signal was given.
    pub fn is_stopping(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the signal is given (or its sender is gone).
    pub async fn stopped(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Sleeps for `delay`; true if the signal came first (or had come already).
    pub async fn sleep(&mut self, delay: Duration) -> bool {
        if self.is_stopping() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => self.is_stopping(),
            _ = self.stopped() => true,
        }
    }
}
