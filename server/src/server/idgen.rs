//! Request ids as etcd makes them: the member's low 16 bits as a prefix, then a counter seeded from the
//! clock, so ids stay unique across members and restarts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const SUFFIX_BITS: u32 = 48;
const SUFFIX_MASK: u64 = (1 << SUFFIX_BITS) - 1;

pub struct IdGen {
    prefix: u64,
    counter: AtomicU64,
}

impl IdGen {
    pub fn new(member_id: u64) -> IdGen {
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        IdGen { prefix: (member_id & 0xffff) << SUFFIX_BITS, counter: AtomicU64::new((ms << 8) & SUFFIX_MASK) }
    }

    pub fn next(&self) -> u64 {
        let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        self.prefix | (n & SUFFIX_MASK)
    }
}
