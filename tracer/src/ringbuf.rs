//! Draining the kernel's ring buffer: records are decoded at once into owned [`Event`]s
//! and passed over a bounded channel. When the consumer falls behind, the channel fills,
//! the reader stops draining and the kernel side counts what it cannot reserve — lost
//! events are always counted, never silently dropped.
//!
//! Wake-ups: the kernel wakes the reader when a record is committed while the reader has
//! consumed everything before it. A reader that always catches up is woken once per
//! record — at 250 000 records/s that was most of goprobe's CPU time, and the wake-up work
//! (`irq_work`) runs on the traced program's threads. After a busy batch the reader pauses
//! for [`BUSY_PAUSE`], so records accumulate without wake-ups and are read in bulk.

use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::{mpsc, watch},
};

use crate::events::{DecodeError, Event};

/// What the reader hands downstream.
#[derive(Debug)]
pub enum Record {
    Event(Event),
    /// A record that did not decode (a build mismatch between the two sides).
    Malformed(DecodeError),
}

/// A batch at least this large means the producer is busy.
const BUSY_BATCH: usize = 32;
/// Pause after a busy batch: bounds wake-ups to ~1000/s, delays live output by as much.
const BUSY_PAUSE: Duration = Duration::from_millis(1);

/// Records go downstream in batches of at most this many: one channel hand-over (and at
/// most one cross-thread wake-up) per batch, not per record.
pub const BATCH: usize = 1024;

/// Reads until `stop` turns true, then drains what is left and returns (dropping `tx`,
/// which tells the consumer the stream is complete).
pub async fn drain(
    ring: RingBuf<MapData>,
    tx: mpsc::Sender<Vec<Record>>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    // SAFETY: the ring buffer owns its map fd for as long as the AsyncFd owns it.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|err| err.into_parts().1)?;
    loop {
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard?;
                let Ok(count) = forward_all(guard.get_inner_mut(), &tx).await else {
                    return Ok(());
                };
                guard.clear_ready();
                drop(guard);
                if count >= BUSY_BATCH {
                    tokio::time::sleep(BUSY_PAUSE).await;
                }
            }
            changed = stop.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    // Whatever the kernel submitted before detach is still in the buffer.
    let _ = forward_all(fd.get_mut(), &tx).await;
    Ok(())
}

/// Forwards every record currently in the buffer and returns how many. Errs when the
/// consumer has gone.
async fn forward_all(
    ring: &mut RingBuf<MapData>,
    tx: &mpsc::Sender<Vec<Record>>,
) -> Result<usize, ()> {
    let mut count = 0;
    loop {
        let mut batch = Vec::with_capacity(BATCH);
        // Decode before awaiting: an item borrows the ring and must be released first.
        while batch.len() < BATCH {
            let Some(item) = ring.next() else { break };
            batch.push(match Event::decode(&item) {
                Ok(event) => Record::Event(event),
                Err(err) => Record::Malformed(err),
            });
        }
        if batch.is_empty() {
            return Ok(count);
        }
        count += batch.len();
        tx.send(batch).await.map_err(drop)?;
    }
}
