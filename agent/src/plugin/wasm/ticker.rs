//! The shared engine's clock: one thread advances the epoch every [`TICK`] while any
//! plugin call runs, and sleeps once calls have stopped for a while.
//!
//! A call does not message this thread: it bumps a counter of running calls, and wakes
//! the thread only if it went to sleep (a relaxed load on the hot path). Each store
//! compares the time with its own deadline when a tick reaches it
//! ([`super::limits::Deadline`]), so a tick never interrupts a call that still has time.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use wasmtime::EngineWeak;

/// How often running calls check their deadline: the timeout's precision.
pub const TICK: Duration = Duration::from_millis(10);
/// Idle ticks before the thread sleeps (one second): an idle agent causes no wake-ups.
const IDLE_TICKS: u32 = 100;

#[derive(Default)]
struct Shared {
    running: AtomicUsize,
    sleeping: AtomicBool,
    thread: OnceLock<Thread>,
}

/// Handle to the ticking thread of one engine.
#[derive(Clone)]
pub struct Ticker {
    shared: Arc<Shared>,
}

/// Marks one call as running until dropped.
pub struct Running<'a>(&'a Shared);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, SeqCst);
    }
}

impl Ticker {
    /// Starts the thread; it ends when the engine is dropped.
    pub fn start(engine: EngineWeak) -> std::io::Result<Ticker> {
        let shared = Arc::new(Shared::default());
        let for_thread = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("outpost-wasm-epoch".into())
            .stack_size(64 << 10)
            .spawn(move || run(&engine, &for_thread))?;
        // The thread only parks after IDLE_TICKS, long after this is set.
        let _ = shared.thread.set(handle.thread().clone());
        Ok(Ticker { shared })
    }

    /// Registers a call that is about to run; ticks come until the guard drops.
    pub fn running(&self) -> Running<'_> {
        self.shared.running.fetch_add(1, SeqCst);
        if self.shared.sleeping.load(SeqCst) {
            if let Some(thread) = self.shared.thread.get() {
                thread.unpark();
            }
        }
        Running(&self.shared)
    }
}

fn run(engine: &EngineWeak, shared: &Shared) {
    let mut idle = 0;
    loop {
        std::thread::sleep(TICK);
        let Some(engine) = engine.upgrade() else {
            return;
        };
        engine.increment_epoch();
        drop(engine);
        if shared.running.load(SeqCst) > 0 {
            idle = 0;
            continue;
        }
        idle += 1;
        if idle >= IDLE_TICKS {
            // Either this thread sees a call that registered, or that call sees
            // `sleeping` and unparks it (both sides use SeqCst).
            shared.sleeping.store(true, SeqCst);
            if shared.running.load(SeqCst) == 0 {
                std::thread::park();
            }
            shared.sleeping.store(false, SeqCst);
            idle = 0;
        }
    }
}
