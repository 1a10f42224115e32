//! The Extism kernel's functions (`extism:host/env`: memory blocks, input, output,
//! error), as native host functions over the instance's [`Arena`](super::arena::Arena).
//!
//! Signatures are those of the kernel module Extism ships (handles and lengths are
//! i64, bytes i32), so plugins built with any Extism PDK link unchanged.

use wasmtime::Linker;

use super::state::{Ctx, HostState};

/// The import module of the kernel and of Extism's built-in host functions.
pub const MODULE: &str = "extism:host/env";

/// Adds the kernel's functions to `linker`.
pub fn define(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    define_blocks(l)?;
    define_call_data(l)
}

fn define_blocks(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    l.func_wrap(
        MODULE,
        "alloc",
        |mut c: Ctx<'_>, n: u64| -> wasmtime::Result<u64> {
            let s = c.data_mut();
            Ok(s.arena.alloc(n, &mut s.budget)?)
        },
    )?;
    l.func_wrap(MODULE, "free", |mut c: Ctx<'_>, p: u64| {
        c.data_mut().arena.free(p)
    })?;
    l.func_wrap(MODULE, "length", |c: Ctx<'_>, p: u64| {
        c.data().arena.length(p)
    })?;
    l.func_wrap(MODULE, "length_unsafe", |c: Ctx<'_>, p: u64| {
        c.data().arena.length(p)
    })?;
    l.func_wrap(MODULE, "load_u8", |c: Ctx<'_>, p: u64| {
        c.data().arena.load_u8(p)
    })?;
    l.func_wrap(MODULE, "load_u64", |c: Ctx<'_>, p: u64| {
        c.data().arena.load_u64(p)
    })?;
    l.func_wrap(MODULE, "store_u8", |mut c: Ctx<'_>, p: u64, v: u32| {
        c.data_mut().arena.store_u8(p, v)
    })?;
    l.func_wrap(MODULE, "store_u64", |mut c: Ctx<'_>, p: u64, v: u64| {
        c.data_mut().arena.store_u64(p, v)
    })?;
    l.func_wrap(MODULE, "memory_bytes", |c: Ctx<'_>| c.data().arena.size())?;
    l.func_wrap(MODULE, "reset", |mut c: Ctx<'_>| c.data_mut().arena.reset())?;
    Ok(())
}

fn define_call_data(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    l.func_wrap(MODULE, "input_length", |c: Ctx<'_>| {
        c.data().arena.input_length()
    })?;
    l.func_wrap(MODULE, "input_offset", |c: Ctx<'_>| {
        c.data().arena.input_offset()
    })?;
    l.func_wrap(MODULE, "input_load_u8", |c: Ctx<'_>, at: u64| {
        c.data().arena.input_load_u8(at)
    })?;
    l.func_wrap(MODULE, "input_load_u64", |c: Ctx<'_>, at: u64| {
        c.data().arena.input_load_u64(at)
    })?;
    l.func_wrap(MODULE, "input_set", |mut c: Ctx<'_>, p: u64, n: u64| {
        c.data_mut().arena.set_input(p, n)
    })?;
    l.func_wrap(MODULE, "output_set", |mut c: Ctx<'_>, p: u64, n: u64| {
        c.data_mut().arena.set_output(p, n)
    })?;
    l.func_wrap(MODULE, "output_offset", |c: Ctx<'_>| {
        c.data().arena.output_offset()
    })?;
    l.func_wrap(MODULE, "output_length", |c: Ctx<'_>| {
        c.data().arena.output_length()
    })?;
    l.func_wrap(MODULE, "error_set", |mut c: Ctx<'_>, p: u64| {
        c.data_mut().arena.set_error(p)
    })?;
    l.func_wrap(MODULE, "error_get", |c: Ctx<'_>| {
        c.data().arena.error_handle()
    })?;
    Ok(())
}
