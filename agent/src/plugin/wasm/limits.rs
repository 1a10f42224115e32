//! Per-instance limits: the memory cap (`max_memory_mb`) and the call deadline
//! (`timeout_ms`). Both live in the instance's store, so one plugin reaching its limit
//! never disturbs another, although all plugins share one engine.

use std::time::{Duration, Instant};

use wasmtime::{ResourceLimiter, UpdateDeadline};

/// The memory cap was reached. Raised as a trap from the limiter or the arena and
/// recognised after the call by its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("memory cap reached")]
pub struct CapReached;

/// The bytes an instance may hold: its linear memories plus its kernel arena. As in
/// Extism, growth is counted and never refunded while the instance lives (linear
/// memories never shrink).
#[derive(Debug)]
pub struct Budget {
    cap: usize,
    used: usize,
}

impl Budget {
    pub fn new(cap: usize) -> Self {
        Budget { cap, used: 0 }
    }

    /// Takes `bytes` more from the budget.
    pub fn charge(&mut self, bytes: usize) -> Result<(), CapReached> {
        match self.used.checked_add(bytes) {
            Some(total) if total <= self.cap => {
                self.used = total;
                Ok(())
            }
            _ => Err(CapReached),
        }
    }
}

impl ResourceLimiter for Budget {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        // An error (not `Ok(false)`) traps: a guest allocator would turn a failed
        // `memory.grow` into an abort, which would read as a trap, not as the cap.
        self.charge(desired.saturating_sub(current))?;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|max| desired <= max))
    }
}

/// When the running call must stop. Checked on the shared engine's epoch ticks by the
/// store's own callback, so each instance has its own clock.
#[derive(Debug)]
pub struct Deadline {
    at: Instant,
    expired: bool,
}

impl Default for Deadline {
    fn default() -> Self {
        Deadline {
            at: Instant::now(),
            expired: false,
        }
    }
}

impl Deadline {
    /// Starts the clock for one call.
    pub fn arm(&mut self, timeout: Duration) {
        self.at = Instant::now() + timeout;
        self.expired = false;
    }

    /// Whether the last call was stopped by its deadline.
    pub fn expired(&self) -> bool {
        self.expired
    }

    /// The epoch callback's decision: stop the guest, or check again next tick.
    pub fn on_tick(&mut self) -> UpdateDeadline {
        if Instant::now() >= self.at {
            self.expired = true;
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::Continue(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_counts_growth_of_all_memories() {
        let mut b = Budget::new(3 << 16);
        assert!(b.memory_growing(0, 1 << 16, None).unwrap());
        assert!(b.memory_growing(1 << 16, 2 << 16, None).unwrap());
        assert!(!b.memory_growing(0, 2, Some(1)).unwrap());
        assert_eq!(b.charge(1 << 16), Ok(()), "the arena shares the budget");
        assert_eq!(b.charge(1), Err(CapReached));
        let e = b.memory_growing(2 << 16, 3 << 16, None).unwrap_err();
        assert!(e.downcast_ref::<CapReached>().is_some(), "{e}");
    }

    #[test]
    fn deadline_interrupts_only_once_due() {
        let mut d = Deadline::default();
        d.arm(Duration::from_secs(60));
        assert!(matches!(d.on_tick(), UpdateDeadline::Continue(1)));
        assert!(!d.expired());
        d.arm(Duration::ZERO);
        assert!(matches!(d.on_tick(), UpdateDeadline::Interrupt));
        assert!(d.expired());
    }
}
