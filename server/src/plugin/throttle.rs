//! Long plugin calls take turns behind one gate, so a plugin that loops (or simply works long) cannot
//! take the member's async workers and CPU away from everyone else.
//!
//! ```text
//!   call ─▶ epoch ticks 1..=FREE_TICKS: yield to tokio, carry on (a hook of a few µs never gets here,
//!           one of a millisecond or two is not slowed)
//!        ─▶ each later tick: the call is long: it rests REST still holding the gate, gives it back, and
//!           queues (FIFO) for it again before its next slice of one tick
//! ```
//!
//! One long call runs at a time and the gate rests between turns, so long calls together use at most
//! about half of one core and hold at most one async worker at a time, however many there are. A call's
//! time limit is wall-clock and keeps running while it waits, so a loop still ends with its time-limit
//! error; a queue of long calls ends the same way instead of piling up work. Measured by
//! `tests/tests/plugin_faults.rs` (the other clients' calls per second with and without faulty plugins).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::UpdateDeadline;

/// Epoch ticks a call runs before it counts as long.
const FREE_TICKS: u32 = 2;
/// How long a long call rests, holding the gate, after each slice.
const REST: Duration = Duration::from_millis(1);

/// The one gate of an engine's long calls.
#[derive(Clone)]
pub struct Gate(Arc<Semaphore>);

impl Gate {
    pub fn new() -> Gate {
        Gate(Arc::new(Semaphore::new(1)))
    }

    /// The turn-keeping of one store.
    pub fn turn(&self) -> Turn {
        Turn { gate: self.0.clone(), ticks: 0, held: Arc::default() }
    }
}

/// Where one store's call stands: ticks run, and the gate if it holds it.
pub struct Turn {
    gate: Arc<Semaphore>,
    ticks: u32,
    held: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
}

impl Turn {
    /// Ends the call's turn-keeping (before a call starts and after it ended, however it ended): the
    /// gate goes back if held.
    pub fn reset(&mut self) {
        self.ticks = 0;
        drop(self.held.lock().unwrap_or_else(|e| e.into_inner()).take());
    }

    /// What the epoch callback answers for a call within its time limit.
    pub fn on_tick(&mut self) -> UpdateDeadline {
        self.ticks = self.ticks.saturating_add(1);
        if self.ticks <= FREE_TICKS {
            // Let the other tasks of this tokio worker run, then carry on.
            return UpdateDeadline::Yield(1);
        }
        let (gate, held) = (self.gate.clone(), self.held.clone());
        let mine = held.lock().unwrap_or_else(|e| e.into_inner()).take();
        UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                if let Some(permit) = mine {
                    tokio::time::sleep(REST).await;
                    drop(permit);
                }
                // Closed never: the semaphore lives as long as the engine.
                if let Ok(permit) = gate.acquire_owned().await {
                    *held.lock().unwrap_or_else(|e| e.into_inner()) = Some(permit);
                }
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_long_call_holds_the_gate_between_ticks_and_gives_it_back_at_reset() {
        let gate = Gate::new();
        let (mut a, mut b) = (gate.turn(), gate.turn());
        for _ in 0..FREE_TICKS {
            assert!(matches!(a.on_tick(), UpdateDeadline::Yield(1)));
        }
        assert_eq!(gate.0.available_permits(), 1);
        let UpdateDeadline::YieldCustom(1, wait) = a.on_tick() else { panic!("a long call waits for its turn") };
        wait.await;
        assert_eq!(gate.0.available_permits(), 0, "a runs its slice holding the gate");
        // b becomes long too: it queues behind a until a gives the gate back.
        for _ in 0..FREE_TICKS {
            b.on_tick();
        }
        let UpdateDeadline::YieldCustom(1, b_wait) = b.on_tick() else { panic!() };
        let b_wait = tokio::spawn(b_wait);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!b_wait.is_finished(), "b waits while a holds the gate");
        a.reset();
        tokio::time::timeout(Duration::from_secs(5), b_wait).await.unwrap().unwrap();
        assert_eq!(gate.0.available_permits(), 0, "b holds it now");
        b.reset();
        assert_eq!(gate.0.available_permits(), 1);
    }
}
