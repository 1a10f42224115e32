//! Shared state that outlives a panic: a thread that panicked while holding a lock
//! leaves consistent data here (every critical section is a few field updates), so the
//! agent keeps serving instead of propagating the poison to every later caller.

use std::fmt::Display;
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `m`, poisoned or not.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Read-locks `l`, poisoned or not.
pub fn read<T: ?Sized>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

/// Write-locks `l`, poisoned or not.
pub fn write<T: ?Sized>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// The last error of a sink, source or plugin, as health shows it.
#[derive(Debug, Default)]
pub struct LastError(Mutex<Option<String>>);

impl LastError {
    pub fn set(&self, error: &dyn Display) {
        *lock(&self.0) = Some(error.to_string());
    }

    pub fn clear(&self) {
        *lock(&self.0) = None;
    }

    pub fn get(&self) -> Option<String> {
        lock(&self.0).clone()
    }
}
