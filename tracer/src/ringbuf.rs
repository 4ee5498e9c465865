//! Draining the kernel's ring buffer: records are decoded at once into owned [`Event`]s
//! and passed over a bounded channel. When the consumer falls behind, the channel fills,
//! the reader stops draining and the kernel side counts what it cannot reserve — lost
//! events are always counted, never silently dropped.

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

/// Reads until `stop` turns true, then drains what is left and returns (dropping `tx`,
/// which tells the consumer the stream is complete).
pub async fn drain(
    ring: RingBuf<MapData>,
    tx: mpsc::Sender<Record>,
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
                if forward_all(guard.get_inner_mut(), &tx).await.is_err() {
                    return Ok(());
                }
                guard.clear_ready();
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

/// Forwards every record currently in the buffer. Errs when the consumer has gone.
async fn forward_all(ring: &mut RingBuf<MapData>, tx: &mpsc::Sender<Record>) -> Result<(), ()> {
    loop {
        // Decode before awaiting: the item borrows the ring and must be released first.
        let record = match ring.next() {
            Some(item) => match Event::decode(&item) {
                Ok(event) => Record::Event(event),
                Err(err) => Record::Malformed(err),
            },
            None => return Ok(()),
        };
        tx.send(record).await.map_err(drop)?;
    }
}
