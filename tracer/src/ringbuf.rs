//! Draining the kernel's ring buffers: records are decoded at once into owned [`Event`]s
//! and passed over a bounded channel. When the consumer falls behind, the channel fills,
//! the reader stops draining and the kernel side counts what it cannot reserve — lost
//! events are always counted, never silently dropped.
//!
//! Two rings (the chain's and the bulk's), one time order: correlation needs each
//! thread's records in the order they happened, and a thread writes to both. Each cycle
//! takes a watermark (now, minus [`IN_FLIGHT_NS`] for records timestamped but not yet
//! committed), reads both rings, sorts by timestamp and forwards what is older than the
//! watermark. The rest waits for the next cycle: anything a thread wrote before it is in
//! a ring by then.
//!
//! Wake-ups: the kernel side asks for none while a ring is less than a quarter full (an
//! exec record excepted), so the reader polls the rings on a timer: every [`POLL_MIN`]
//! while records come, backing off to [`POLL_MAX`] while none do. A wake-up is an
//! `irq_work` on the traced program's thread, which cost more than the probe's own program
//! when the reader, always caught up, was woken at every record. Each cycle reads what
//! gathered since the last in bulk.

use std::{collections::VecDeque, time::Duration};

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

impl Record {
    fn ts(&self) -> u64 {
        match self {
            Record::Event(event) => event.ts_ns,
            Record::Malformed(_) => 0,
        }
    }
}

/// How long a record may be timestamped before it is committed: a BPF program's run.
const IN_FLIGHT_NS: u64 = 1_000_000;
/// The poll interval while records come: how late a live line may be. Each cycle wakes
/// goprobe's threads; at 10 ms they cost more CPU than decoding 10 000 records/s.
const POLL_MIN: Duration = Duration::from_millis(25);
/// The poll interval of an idle trace (doubling from [`POLL_MIN`]).
const POLL_MAX: Duration = Duration::from_millis(100);

/// Records go downstream in batches of at most this many: one channel hand-over (and at
/// most one cross-thread wake-up) per batch, not per record.
pub const BATCH: usize = 1024;
/// At most this many records are read from each ring per cycle, so what goprobe holds in
/// memory stays bounded however far it falls behind (the rest waits in the ring, which
/// the kernel sized, and what does not fit there is counted as lost).
const READ_PER_CYCLE: usize = 8 * BATCH;

/// Reads `rings` until `stop` turns true, then drains what is left and returns (dropping
/// `tx`, which tells the consumer the stream is complete).
pub async fn drain(
    rings: Vec<RingBuf<MapData>>,
    tx: mpsc::Sender<Vec<Record>>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut fds = Vec::with_capacity(rings.len());
    for ring in rings {
        // SAFETY: the ring buffer owns its map fd for as long as the AsyncFd owns it.
        fds.push(
            unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
                .map_err(|err| err.into_parts().1)?,
        );
    }
    let mut held: VecDeque<Record> = VecDeque::new();
    let mut poll = POLL_MIN;
    loop {
        if *stop.borrow() {
            break;
        }
        let ready = async {
            let waits = fds.iter().map(|fd| Box::pin(fd.readable()));
            let (guard, _, _) = futures_select_all(waits).await;
            guard.map(|mut guard| guard.clear_ready())
        };
        tokio::select! {
            ready = ready => { ready?; }
            // Records held for the watermark go with the next cycle's.
            _ = tokio::time::sleep(poll) => {}
            changed = stop.changed() => {
                if changed.is_err() {
                    break;
                }
                continue;
            }
        }
        let now = monotonic_ns().saturating_sub(IN_FLIGHT_NS);
        let (count, horizon) = read_some(&mut fds, &mut held, READ_PER_CYCLE);
        poll = if count > 0 {
            POLL_MIN
        } else {
            (poll * 2).min(POLL_MAX)
        };
        let watermark = horizon.map_or(now, |horizon| horizon.min(now));
        if forward(&tx, &mut held, Some(watermark)).await.is_err() {
            return Ok(());
        }
    }
    // Whatever the kernel submitted before detach is still in the rings.
    loop {
        let (_, horizon) = read_some(&mut fds, &mut held, READ_PER_CYCLE);
        if forward(&tx, &mut held, horizon).await.is_err() || horizon.is_none() {
            break;
        }
    }
    let _ = forward(&tx, &mut held, None).await;
    Ok(())
}

/// Waits for the first of `futures` (a tiny `select_all`, to avoid a dependency).
async fn futures_select_all<F: std::future::Future + Unpin>(
    futures: impl Iterator<Item = F>,
) -> (F::Output, usize, ()) {
    let mut futures: Vec<F> = futures.collect();
    std::future::poll_fn(move |cx| {
        for (i, future) in futures.iter_mut().enumerate() {
            if let std::task::Poll::Ready(out) = std::pin::Pin::new(future).poll(cx) {
                return std::task::Poll::Ready((out, i, ()));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Reads up to `limit` records from each ring into `held`, kept sorted by timestamp.
/// Returns how many were read and, when a ring still had more, the horizon: records
/// older than the last one read from it minus [`IN_FLIGHT_NS`] are complete.
fn read_some(
    fds: &mut [AsyncFd<RingBuf<MapData>>],
    held: &mut VecDeque<Record>,
    limit: usize,
) -> (usize, Option<u64>) {
    let before = held.len();
    let mut horizon: Option<u64> = None;
    for fd in fds.iter_mut() {
        let ring = fd.get_mut();
        let mut read = 0;
        let mut last = 0;
        while read < limit {
            let Some(item) = ring.next() else { break };
            let record = match Event::decode(&item) {
                Ok(event) => Record::Event(event),
                Err(err) => Record::Malformed(err),
            };
            last = last.max(record.ts());
            held.push_back(record);
            read += 1;
        }
        if read == limit {
            let this = last.saturating_sub(IN_FLIGHT_NS);
            horizon = Some(horizon.map_or(this, |h| h.min(this)));
        }
    }
    let read = held.len() - before;
    if read > 0 {
        // Stable: equal timestamps keep ring order.
        held.make_contiguous().sort_by_key(Record::ts);
    }
    (read, horizon)
}

/// Sends the held records older than `watermark` (all with `None`) in batches. Errs when
/// the consumer has gone.
async fn forward(
    tx: &mpsc::Sender<Vec<Record>>,
    held: &mut VecDeque<Record>,
    watermark: Option<u64>,
) -> Result<(), ()> {
    loop {
        let ready = held
            .iter()
            .take(BATCH)
            .take_while(|record| watermark.is_none_or(|mark| record.ts() < mark))
            .count();
        if ready == 0 {
            return Ok(());
        }
        let batch: Vec<Record> = held.drain(..ready).collect();
        tx.send(batch).await.map_err(drop)?;
    }
}

/// CLOCK_MONOTONIC now, the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
