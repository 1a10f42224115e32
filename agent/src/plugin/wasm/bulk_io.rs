//! `outpost:host/io`: an optional fast path for a call's input, output and error.
//!
//! Through the Extism kernel a guest moves bytes eight at a time, one host call each
//! (100 KB of input is 12,800 calls). These functions copy between the call's blocks
//! and the guest's own exported `memory` in one go. They are an extension: plugins
//! that do not import them (every other Extism PDK, older Outpost plugins) use the
//! kernel functions, which behave as before. The Outpost PDK imports them.
//!
//! | function | signature | effect |
//! |---|---|---|
//! | `input_read`   | (dst i32, len i32) -> i32 | copies the first `min(len, input_length)` input bytes to `dst`; returns the count |
//! | `output_write` | (src i32, len i32)        | the `len` bytes at `src` become the call's output |
//! | `error_write`  | (src i32, len i32)        | the `len` bytes at `src` become the call's error message |
//!
//! A range outside the guest's memory traps.

use wasmtime::Linker;

use super::state::{Ctx, HostState};

pub const MODULE: &str = "outpost:host/io";

#[derive(Debug, thiserror::Error)]
enum IoError {
    #[error("{0}: the plugin exports no `memory`")]
    NoMemory(&'static str),
    #[error("{0}: range {1}+{2} is outside the plugin's memory")]
    OutOfBounds(&'static str, u32, u32),
}

/// Adds the functions to `linker`.
pub fn define(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    l.func_wrap(MODULE, "input_read", input_read)?;
    l.func_wrap(MODULE, "output_write", |c: Ctx<'_>, src: u32, len: u32| {
        write(c, "output_write", src, len, Target::Output)
    })?;
    l.func_wrap(MODULE, "error_write", |c: Ctx<'_>, src: u32, len: u32| {
        write(c, "error_write", src, len, Target::Error)
    })?;
    Ok(())
}

fn input_read(mut c: Ctx<'_>, dst: u32, len: u32) -> wasmtime::Result<u32> {
    const NAME: &str = "input_read";
    let memory = c.data().guest_memory.ok_or(IoError::NoMemory(NAME))?;
    let (guest, state) = memory.data_and_store_mut(&mut c);
    let input = state.arena.input();
    let n = input.len().min(len as usize);
    let start = dst as usize;
    let to = guest
        .get_mut(start..start.saturating_add(n))
        .ok_or(IoError::OutOfBounds(NAME, dst, len))?;
    to.copy_from_slice(&input[..n]);
    Ok(n as u32)
}

enum Target {
    Output,
    Error,
}

fn write(
    mut c: Ctx<'_>,
    name: &'static str,
    src: u32,
    len: u32,
    target: Target,
) -> wasmtime::Result<()> {
    let memory = c.data().guest_memory.ok_or(IoError::NoMemory(name))?;
    let (guest, state) = memory.data_and_store_mut(&mut c);
    let start = src as usize;
    let bytes = guest
        .get(start..start.saturating_add(len as usize))
        .ok_or(IoError::OutOfBounds(name, src, len))?;
    let block = state.arena.alloc_bytes(bytes, &mut state.budget)?;
    match target {
        Target::Output => state.arena.set_output(block, u64::from(len)),
        Target::Error => state.arena.set_error(block),
    }
    Ok(())
}
