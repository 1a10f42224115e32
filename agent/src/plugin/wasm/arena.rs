//! The Extism kernel's memory, kept natively: the blocks a plugin and the host exchange
//! (input, output, error, host-function arguments and results).
//!
//! Extism ships this "kernel" as a second WASM module with its own linear memory. Here
//! it is a byte arena in the host: the guest still sees only offsets (handles) and moves
//! bytes with `load_*`/`store_*`, exactly as the ABI says, but the host reads input,
//! output and arguments with plain slices, and nothing has to be compiled for it.
//!
//! Allocation is a bump pointer reset at the start of every call (the host does it, as
//! Extism's `reset` does): a call's blocks live until the next call. Freeing the last
//! block gives its space back, which is the pattern of `#[host_fn]` arguments.

use super::limits::{Budget, CapReached};

/// Offsets below this are never handed out: 0 is the ABI's "no block".
const FIRST: usize = 8;
/// The smallest capacity the arena grows to.
const MIN_CAPACITY: usize = 64 << 10;

#[derive(Debug, Clone, Copy)]
struct Block {
    offset: u64,
    len: u64,
    live: bool,
}

/// One instance's kernel state.
#[derive(Debug)]
pub struct Arena {
    /// `bytes.len()` is the bump pointer.
    bytes: Vec<u8>,
    /// In increasing offset order (bump allocation).
    blocks: Vec<Block>,
    input: (u64, u64),
    output: (u64, u64),
    error: u64,
}

impl Default for Arena {
    fn default() -> Self {
        Arena {
            bytes: vec![0; FIRST],
            blocks: Vec::new(),
            input: (0, 0),
            output: (0, 0),
            error: 0,
        }
    }
}

impl Arena {
    /// Forgets every block, the input, output and error (capacity is kept).
    pub fn reset(&mut self) {
        self.bytes.truncate(FIRST);
        self.blocks.clear();
        self.input = (0, 0);
        self.output = (0, 0);
        self.error = 0;
    }

    /// A new zeroed block of `n` bytes; 0 for `n == 0`, as the ABI's `alloc`.
    pub fn alloc(&mut self, n: u64, budget: &mut Budget) -> Result<u64, CapReached> {
        let Ok(n) = usize::try_from(n) else {
            return Err(CapReached);
        };
        if n == 0 {
            return Ok(0);
        }
        let offset = self.bytes.len();
        self.grow(n, budget)?;
        self.bytes.resize(offset + n, 0);
        Ok(self.push_block(offset, n))
    }

    /// A new block holding `data` (0 for empty data).
    pub fn alloc_bytes(&mut self, data: &[u8], budget: &mut Budget) -> Result<u64, CapReached> {
        if data.is_empty() {
            return Ok(0);
        }
        let offset = self.bytes.len();
        self.grow(data.len(), budget)?;
        self.bytes.extend_from_slice(data);
        Ok(self.push_block(offset, data.len()))
    }

    /// Makes room for `n` more bytes, charging the budget for what the arena adds.
    fn grow(&mut self, n: usize, budget: &mut Budget) -> Result<(), CapReached> {
        let needed = self.bytes.len().checked_add(n).ok_or(CapReached)?;
        let old = self.bytes.capacity();
        if needed <= old {
            return Ok(());
        }
        let new = needed.max(old.saturating_mul(2)).max(MIN_CAPACITY);
        budget.charge(new - old)?;
        self.bytes.reserve_exact(new - self.bytes.len());
        Ok(())
    }

    fn push_block(&mut self, offset: usize, len: usize) -> u64 {
        let offset = offset as u64;
        self.blocks.push(Block {
            offset,
            len: len as u64,
            live: true,
        });
        offset
    }

    fn find(&self, offset: u64) -> Option<usize> {
        self.blocks.binary_search_by_key(&offset, |b| b.offset).ok()
    }

    /// The ABI's `free`: unknown offsets are ignored; freeing the input empties it.
    /// Freed blocks at the end give their space back, unless the output still points
    /// there (Extism never erases freed bytes, and reads the output by its range, so a
    /// guest may free a block it set as its output).
    pub fn free(&mut self, offset: u64) {
        let Some(i) = self.find(offset) else { return };
        self.blocks[i].live = false;
        if offset == self.input.0 {
            self.input.1 = 0;
        }
        let kept = self.output.0.saturating_add(self.output.1);
        while let Some(b) = self.blocks.last().filter(|b| !b.live && b.offset >= kept) {
            self.bytes.truncate(b.offset as usize);
            self.blocks.pop();
        }
    }

    /// The ABI's `length`: the size of the live block starting at `offset`, else 0.
    pub fn length(&self, offset: u64) -> u64 {
        self.find(offset)
            .map(|i| self.blocks[i])
            .filter(|b| b.live)
            .map_or(0, |b| b.len)
    }

    /// The bytes of the live block at `offset` (empty if there is none).
    pub fn block(&self, offset: u64) -> &[u8] {
        let len = self.length(offset);
        self.range(offset, len).unwrap_or_default()
    }

    /// `len` bytes at `offset`, if they are inside the arena.
    fn range(&self, offset: u64, len: u64) -> Option<&[u8]> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        self.bytes.get(start..end)
    }

    fn range_mut(&mut self, offset: u64, len: usize) -> Option<&mut [u8]> {
        let start = usize::try_from(offset).ok()?;
        self.bytes.get_mut(start..start.checked_add(len)?)
    }

    /// The ABI's `load_u8`: 0 outside the arena.
    pub fn load_u8(&self, offset: u64) -> u32 {
        self.range(offset, 1).map_or(0, |b| u32::from(b[0]))
    }

    /// The ABI's `load_u64` (little-endian): 0 outside the arena.
    pub fn load_u64(&self, offset: u64) -> u64 {
        self.range(offset, 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    }

    /// The ABI's `store_u8`: ignored outside the arena.
    pub fn store_u8(&mut self, offset: u64, value: u32) {
        if let Some(b) = self.range_mut(offset, 1) {
            b[0] = value as u8;
        }
    }

    /// The ABI's `store_u64`: ignored outside the arena.
    pub fn store_u64(&mut self, offset: u64, value: u64) {
        if let Some(b) = self.range_mut(offset, 8) {
            b.copy_from_slice(&value.to_le_bytes());
        }
    }

    /// The ABI's `input_set`.
    pub fn set_input(&mut self, offset: u64, len: u64) {
        self.input = (offset, len);
    }

    pub fn input_offset(&self) -> u64 {
        self.input.0
    }

    pub fn input_length(&self) -> u64 {
        self.input.1
    }

    /// The call's input, if its range is inside the arena.
    pub fn input(&self) -> &[u8] {
        self.range(self.input.0, self.input.1).unwrap_or_default()
    }

    /// The ABI's `input_load_u8`: 0 past the input's end.
    pub fn input_load_u8(&self, at: u64) -> u32 {
        match at.checked_add(1) {
            Some(end) if end <= self.input.1 => self.load_u8(self.input.0 + at),
            _ => 0,
        }
    }

    /// The ABI's `input_load_u64`: 0 past the input's end.
    pub fn input_load_u64(&self, at: u64) -> u64 {
        match at.checked_add(8) {
            Some(end) if end <= self.input.1 => self.load_u64(self.input.0 + at),
            _ => 0,
        }
    }

    /// The ABI's `output_set`.
    pub fn set_output(&mut self, offset: u64, len: u64) {
        self.output = (offset, len);
    }

    pub fn output_offset(&self) -> u64 {
        self.output.0
    }

    pub fn output_length(&self) -> u64 {
        self.output.1
    }

    /// The call's output; `None` if the plugin set a range outside the arena.
    pub fn output(&self) -> Option<&[u8]> {
        match self.output {
            (_, 0) => Some(&[]),
            (offset, len) => self.range(offset, len),
        }
    }

    /// The ABI's `error_set` (0 clears it).
    pub fn set_error(&mut self, offset: u64) {
        self.error = offset;
    }

    pub fn error_handle(&self) -> u64 {
        self.error
    }

    /// The error message the plugin set, if any: a live, non-empty block (Extism
    /// ignores an error whose block was freed).
    pub fn error(&self) -> Option<&[u8]> {
        Some(self.block(self.error)).filter(|m| !m.is_empty())
    }

    /// The ABI's `memory_bytes`: the arena's size.
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> Budget {
        Budget::new(1 << 20)
    }

    #[test]
    fn blocks_round_trip_and_unknown_offsets_are_harmless() {
        let (mut a, mut b) = (Arena::default(), budget());
        assert_eq!(a.alloc(0, &mut b), Ok(0));
        let p = a.alloc(11, &mut b).unwrap();
        assert_ne!(p, 0);
        a.store_u64(p, u64::from_le_bytes(*b"hello, w"));
        for (i, c) in b"orl".iter().enumerate() {
            a.store_u8(p + 8 + i as u64, u32::from(*c));
        }
        assert_eq!(a.block(p), b"hello, worl");
        assert_eq!(a.length(p), 11);
        assert_eq!(a.length(p + 1), 0, "interior pointers are not blocks");
        assert_eq!(a.load_u64(p + 8), 0, "reads past the end give 0");
        a.store_u64(1 << 40, 7);
        assert_eq!(a.load_u8(1 << 40), 0);
        a.free(12345);
        a.free(p);
        assert_eq!(a.length(p), 0);
        assert_eq!(a.alloc(3, &mut b), Ok(p), "the freed tail is reused");
    }

    #[test]
    fn input_output_and_error() {
        let (mut a, mut b) = (Arena::default(), budget());
        let p = a.alloc_bytes(b"0123456789", &mut b).unwrap();
        a.set_input(p, 10);
        assert_eq!(a.input(), b"0123456789");
        assert_eq!(a.input_load_u64(2), u64::from_le_bytes(*b"23456789"));
        assert_eq!(a.input_load_u64(3), 0);
        assert_eq!(a.input_load_u8(9), u32::from(b'9'));
        assert_eq!(a.input_load_u8(10), 0);
        assert_eq!(a.output(), Some(&b""[..]));
        a.set_output(p + 5, 5);
        assert_eq!(a.output(), Some(&b"56789"[..]));
        a.set_output(p, 1 << 30);
        assert_eq!(a.output(), None);
        assert_eq!(a.error(), None);
        let e = a.alloc_bytes(b"bad", &mut b).unwrap();
        a.set_error(e);
        assert_eq!(a.error(), Some(&b"bad"[..]));
        a.reset();
        assert_eq!((a.error(), a.input_length(), a.length(p)), (None, 0, 0));
    }

    #[test]
    fn a_freed_output_block_stays_readable_a_freed_error_does_not_count() {
        let (mut a, mut b) = (Arena::default(), budget());
        let out = a.alloc_bytes(b"out", &mut b).unwrap();
        a.set_output(out, 3);
        a.free(out);
        assert_eq!(a.output(), Some(&b"out"[..]));
        assert_eq!(a.length(out), 0, "but it is no longer a block");
        let err = a.alloc_bytes(b"err", &mut b).unwrap();
        a.set_error(err);
        assert_eq!(a.error(), Some(&b"err"[..]));
        a.free(err);
        assert_eq!(a.error(), None);
    }

    #[test]
    fn growth_is_charged_to_the_budget() {
        let (mut a, mut b) = (Arena::default(), Budget::new(100 << 10));
        assert!(a.alloc(60 << 10, &mut b).is_ok());
        assert_eq!(a.alloc(60 << 10, &mut b), Err(CapReached));
    }
}
