//! What starts next. The [`Queue`] holds scheduled downloads in three sets — waiting, running,
//! paused — and decides which waiting ones start when a slot is free.
//!
//! Order (best first), fully deterministic:
//!
//! 1. foreground before background (a page is waiting for it: Apple's `startForegroundDownload`),
//! 2. essential before non-essential,
//! 3. higher [`Priority`] first,
//! 4. older first (`created_at`), then the order in which they were pushed.
//!
//! Rules:
//!
//! * At most [`QueueLimits::max_concurrent`] downloads run at once, foreground ones included
//!   (default 3). A foreground download never exceeds the limit: instead [`Queue::preempt`] names
//!   the worst-ranked running background downloads to pause and moves them back to waiting.
//! * A waiting entry may carry a `not_before` time (retry back-off); it is *eligible* once
//!   `now >= not_before`. Only eligible entries start, and [`Queue::next_wakeup`] says when the
//!   next one becomes eligible.
//! * Hence a background non-essential download never starts while an eligible essential one
//!   waits; paused entries do not wait (they are not eligible until resumed).
//! * Bandwidth: an optional budget in bytes per second is shared equally by the running
//!   downloads ([`Queue::bandwidth_share`]); each transfer paces itself with a [`Throttle`].
//!
//! # Example
//! ```
//! use background_assets::core::download::{Identifier, Priority};
//! use background_assets::core::queue::{Queue, QueueEntry, QueueLimits};
//!
//! let id = |s: &str| Identifier::new(s).unwrap();
//! let mut queue = Queue::new(QueueLimits { max_concurrent: 1, bandwidth: None });
//! queue.push(QueueEntry::new(id("extra"), false, Priority::MAX, 0))?;
//! queue.push(QueueEntry::new(id("core"), true, Priority::MIN, 5))?;
//! assert_eq!(queue.schedule(10), vec![id("core")]); // essential first
//! assert!(queue.schedule(10).is_empty());          // the one slot is taken
//! queue.remove(&id("core"));                        // finished
//! assert_eq!(queue.schedule(11), vec![id("extra")]);
//! # Ok::<(), background_assets::core::error::Error>(())
//! ```

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::download::{Identifier, Priority, UrlDownload};
use super::error::{Error, Result};
use super::Millis;

/// Limits a [`Queue`] enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueLimits {
    /// Most downloads running at once (at least 1 is used even if 0 is given).
    pub max_concurrent: usize,
    /// Bytes per second shared by all running downloads; `None` is unlimited.
    pub bandwidth: Option<u64>,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            max_concurrent: 3,
            bandwidth: None,
        }
    }
}

/// What the queue needs to know about a download to rank it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    /// The download.
    pub identifier: Identifier,
    /// Essential downloads go before non-essential ones.
    pub essential: bool,
    /// Then higher priority first.
    pub priority: Priority,
    /// Then older first.
    pub created_at: Millis,
    /// Foreground downloads go before everything else and may pre-empt background ones.
    pub foreground: bool,
}

impl QueueEntry {
    /// A background entry.
    pub fn new(
        identifier: Identifier,
        essential: bool,
        priority: Priority,
        created_at: Millis,
    ) -> QueueEntry {
        QueueEntry {
            identifier,
            essential,
            priority,
            created_at,
            foreground: false,
        }
    }

    /// The entry for a download, in the foreground or not.
    pub fn for_download(download: &UrlDownload, foreground: bool) -> QueueEntry {
        QueueEntry {
            identifier: download.identifier.clone(),
            essential: download.essential,
            priority: download.priority,
            created_at: download.created_at,
            foreground,
        }
    }

    /// Marks the entry as a foreground one.
    pub fn in_foreground(mut self) -> QueueEntry {
        self.foreground = true;
        self
    }
}

/// Where an entry is in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Placement {
    /// Waiting for a slot (or for its `not_before` time).
    Waiting,
    /// Holding a slot.
    Running,
    /// Paused: neither waiting nor holding a slot.
    Paused,
}

/// Sort key: smaller is better.
type Rank = (Reverse<bool>, Reverse<bool>, Reverse<Priority>, Millis, u64);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Slot {
    entry: QueueEntry,
    seq: u64,
    placement: Placement,
    not_before: Millis,
}

impl Slot {
    fn rank(&self) -> Rank {
        (
            Reverse(self.entry.foreground),
            Reverse(self.entry.essential),
            Reverse(self.entry.priority),
            self.entry.created_at,
            self.seq,
        )
    }
}

/// The queue's own fields, stored apart from its slots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct QueueHead {
    limits: QueueLimits,
    next_seq: u64,
}

/// The scheduler. See the [module docs](self) for the order and the rules. Serializable, so a
/// driver can store it and another context can continue it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "QueueFields")]
pub struct Queue {
    limits: QueueLimits,
    slots: HashMap<Identifier, Slot>,
    /// Waiting entries, best first.
    waiting: BTreeSet<(Rank, Identifier)>,
    /// Running entries, best first.
    running: BTreeSet<(Rank, Identifier)>,
    next_seq: u64,
    /// Waiting entries not eligible before a time (a retry back-off), soonest first: what
    /// [`Queue::next_wakeup`] reads. Derived from the slots (not stored).
    #[serde(skip)]
    deferred: BTreeSet<(Millis, Identifier)>,
}

/// A stored queue as it is read: the sets derived from the slots are built again from them.
#[derive(Deserialize)]
struct QueueFields {
    limits: QueueLimits,
    slots: HashMap<Identifier, Slot>,
    next_seq: u64,
}

impl From<QueueFields> for Queue {
    fn from(fields: QueueFields) -> Queue {
        Queue::from_parts(
            QueueHead {
                limits: fields.limits,
                next_seq: fields.next_seq,
            },
            fields.slots,
        )
    }
}

impl Queue {
    /// An empty queue.
    pub fn new(limits: QueueLimits) -> Queue {
        Queue {
            limits,
            ..Queue::default()
        }
    }

    /// The limits.
    pub fn limits(&self) -> QueueLimits {
        self.limits
    }

    /// Changes the limits; running downloads above a lower limit keep running (no new ones start
    /// until the count is below it).
    pub fn set_limits(&mut self, limits: QueueLimits) {
        self.limits = limits;
    }

    fn max_concurrent(&self) -> usize {
        self.limits.max_concurrent.max(1)
    }

    /// Adds a download as waiting. [`Error::DownloadAlreadyScheduled`] if the identifier is
    /// already in the queue (in any placement).
    pub fn push(&mut self, entry: QueueEntry) -> Result<()> {
        if self.slots.contains_key(&entry.identifier) {
            return Err(Error::DownloadAlreadyScheduled {
                identifier: entry.identifier.to_string(),
            });
        }
        let slot = Slot {
            entry,
            seq: self.next_seq,
            placement: Placement::Waiting,
            not_before: 0,
        };
        self.next_seq += 1;
        self.waiting
            .insert((slot.rank(), slot.entry.identifier.clone()));
        self.slots.insert(slot.entry.identifier.clone(), slot);
        Ok(())
    }

    fn unlink(&mut self, id: &Identifier) -> Option<Slot> {
        let slot = self.slots.get(id)?;
        let key = (slot.rank(), id.clone());
        if slot.placement == Placement::Waiting && slot.not_before > 0 {
            self.deferred.remove(&(slot.not_before, id.clone()));
        }
        match slot.placement {
            Placement::Waiting => self.waiting.remove(&key),
            Placement::Running => self.running.remove(&key),
            Placement::Paused => true,
        };
        self.slots.remove(id)
    }

    fn relink(&mut self, mut slot: Slot, placement: Placement) {
        slot.placement = placement;
        let key = (slot.rank(), slot.entry.identifier.clone());
        match placement {
            Placement::Waiting => {
                if slot.not_before > 0 {
                    self.deferred
                        .insert((slot.not_before, slot.entry.identifier.clone()));
                }
                self.waiting.insert(key);
            }
            Placement::Running => {
                self.running.insert(key);
            }
            Placement::Paused => {}
        }
        self.slots.insert(slot.entry.identifier.clone(), slot);
    }

    fn not_scheduled(id: &Identifier) -> Error {
        Error::DownloadNotScheduled {
            identifier: id.to_string(),
        }
    }

    /// What is stored of the queue beside its slots (see [`Queue::from_parts`]).
    pub(crate) fn head(&self) -> QueueHead {
        QueueHead {
            limits: self.limits,
            next_seq: self.next_seq,
        }
    }

    /// The slot of each queued download.
    pub(crate) fn slots(&self) -> &HashMap<Identifier, Slot> {
        &self.slots
    }

    /// The queue with `head` and `slots` (the ordered sets are rebuilt from the slots'
    /// placements: they hold exactly the waiting and the running slots).
    pub(crate) fn from_parts(head: QueueHead, slots: HashMap<Identifier, Slot>) -> Queue {
        let mut queue = Queue {
            limits: head.limits,
            next_seq: head.next_seq,
            ..Queue::default()
        };
        for (_, slot) in slots {
            let placement = slot.placement;
            queue.relink(slot, placement);
        }
        queue
    }

    /// Takes a download out of the queue (finished, failed or cancelled), freeing its slot.
    /// Returns where it was, or `None` if it was not in the queue.
    pub fn remove(&mut self, id: &Identifier) -> Option<Placement> {
        self.unlink(id).map(|slot| slot.placement)
    }

    /// Pauses a waiting or running download (a running one frees its slot; the driver stops its
    /// transfer). [`Error::DownloadNotScheduled`] if unknown or already paused.
    pub fn pause(&mut self, id: &Identifier) -> Result<()> {
        match self.slots.get(id).map(|s| s.placement) {
            Some(Placement::Waiting | Placement::Running) => {
                let slot = self.unlink(id).ok_or_else(|| Self::not_scheduled(id))?;
                self.relink(slot, Placement::Paused);
                Ok(())
            }
            _ => Err(Self::not_scheduled(id)),
        }
    }

    /// Resumes a paused download: it waits again, keeping its age.
    /// [`Error::DownloadNotScheduled`] if it is not paused.
    pub fn resume(&mut self, id: &Identifier) -> Result<()> {
        match self.slots.get(id).map(|s| s.placement) {
            Some(Placement::Paused) => {
                let mut slot = self.unlink(id).ok_or_else(|| Self::not_scheduled(id))?;
                slot.not_before = 0;
                self.relink(slot, Placement::Waiting);
                Ok(())
            }
            _ => Err(Self::not_scheduled(id)),
        }
    }

    /// Gives a running download's slot back and makes it wait again, eligible from `not_before`
    /// (a retry back-off; pass 0 to make it eligible at once). It keeps its age.
    /// [`Error::DownloadNotScheduled`] if it is not running.
    pub fn requeue(&mut self, id: &Identifier, not_before: Millis) -> Result<()> {
        match self.slots.get(id).map(|s| s.placement) {
            Some(Placement::Running) => {
                let mut slot = self.unlink(id).ok_or_else(|| Self::not_scheduled(id))?;
                slot.not_before = not_before;
                self.relink(slot, Placement::Waiting);
                Ok(())
            }
            _ => Err(Self::not_scheduled(id)),
        }
    }

    /// Moves a download to the foreground (a page asked for it now). A paused one waits again;
    /// a retry back-off is dropped. [`Error::DownloadNotScheduled`] if unknown.
    pub fn promote(&mut self, id: &Identifier) -> Result<()> {
        let mut slot = self.unlink(id).ok_or_else(|| Self::not_scheduled(id))?;
        let placement = match slot.placement {
            Placement::Running => Placement::Running,
            Placement::Waiting | Placement::Paused => Placement::Waiting,
        };
        slot.entry.foreground = true;
        slot.not_before = 0;
        self.relink(slot, placement);
        Ok(())
    }

    /// Starts as many eligible waiting downloads as free slots allow, best first, and returns
    /// them in start order. The driver starts their transfers.
    pub fn schedule(&mut self, now: Millis) -> Vec<Identifier> {
        let mut started = Vec::new();
        while self.running.len() < self.max_concurrent() {
            let Some(id) = self.best_eligible(now) else {
                break;
            };
            if let Some(slot) = self.unlink(&id) {
                self.relink(slot, Placement::Running);
                started.push(id);
            }
        }
        started
    }

    /// What [`schedule`](Self::schedule) would start first, without starting it.
    pub fn peek(&self, now: Millis) -> Option<&Identifier> {
        self.eligible(now).next()
    }

    /// The waiting downloads eligible at `now`, in the order [`schedule`](Self::schedule)
    /// starts them as slots free up (nothing else queued or changed in between).
    pub fn eligible(&self, now: Millis) -> impl Iterator<Item = &Identifier> + '_ {
        self.waiting
            .iter()
            .filter(move |(_, id)| self.slots[id].not_before <= now)
            .map(|(_, id)| id)
    }

    fn best_eligible(&self, now: Millis) -> Option<Identifier> {
        self.peek(now).cloned()
    }

    /// Frees slots for eligible waiting foreground downloads by moving the worst-ranked running
    /// background downloads back to waiting (they keep their age). Returns them: the driver
    /// pauses their transfers (checkpointing), then calls [`schedule`](Self::schedule).
    pub fn preempt(&mut self, now: Millis) -> Vec<Identifier> {
        let foreground_waiting = self
            .waiting
            .iter()
            .take_while(|(rank, _)| rank.0 .0)
            .filter(|(_, id)| self.slots[id].not_before <= now)
            .count();
        let free = self.max_concurrent().saturating_sub(self.running.len());
        let needed = foreground_waiting.saturating_sub(free);
        let victims: Vec<Identifier> = self
            .running
            .iter()
            .rev()
            .filter(|(rank, _)| !rank.0 .0)
            .take(needed)
            .map(|(_, id)| id.clone())
            .collect();
        for id in &victims {
            if let Some(mut slot) = self.unlink(id) {
                slot.not_before = 0;
                self.relink(slot, Placement::Waiting);
            }
        }
        victims
    }

    /// The earliest `not_before` among waiting entries that are not yet eligible at `now`:
    /// when the driver should call [`schedule`](Self::schedule) again.
    pub fn next_wakeup(&self, now: Millis) -> Option<Millis> {
        self.deferred.iter().map(|(t, _)| *t).find(|&t| t > now)
    }

    /// Where `id` is, if queued.
    pub fn placement(&self, id: &Identifier) -> Option<Placement> {
        self.slots.get(id).map(|s| s.placement)
    }

    /// The entry of `id`, if queued.
    pub fn entry(&self, id: &Identifier) -> Option<&QueueEntry> {
        self.slots.get(id).map(|s| &s.entry)
    }

    /// Running downloads, best-ranked first.
    pub fn running(&self) -> impl Iterator<Item = &Identifier> {
        self.running.iter().map(|(_, id)| id)
    }

    /// Waiting downloads (eligible or not), best-ranked first.
    pub fn waiting(&self) -> impl Iterator<Item = &Identifier> {
        self.waiting.iter().map(|(_, id)| id)
    }

    /// Number of running downloads.
    pub fn running_len(&self) -> usize {
        self.running.len()
    }

    /// Number of queued downloads (waiting, running and paused).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Each running download's share of the bandwidth budget, in bytes per second (at least 1);
    /// `None` when there is no budget. With nothing running, the whole budget.
    pub fn bandwidth_share(&self) -> Option<u64> {
        self.limits
            .bandwidth
            .map(|budget| (budget / self.running.len().max(1) as u64).max(1))
    }
}

/// A token bucket that paces one transfer to a rate in bytes per second.
///
/// After reading `n` bytes, call [`take`](Throttle::take); it returns how many milliseconds to
/// wait before reading more (0 while within the rate and burst).
///
/// # Example
/// ```
/// use background_assets::core::queue::Throttle;
///
/// let mut throttle = Throttle::new(1_000, 1_000, 0); // 1000 B/s, burst of 1000 B
/// assert_eq!(throttle.take(1_000, 0), 0);   // the burst
/// assert_eq!(throttle.take(500, 0), 500);   // 500 B over: wait 500 ms
/// assert_eq!(throttle.take(0, 500), 0);     // ... and then it is paid back
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    rate: u64,
    burst: u64,
    /// Available tokens in milli-bytes (may be negative: debt).
    tokens: i128,
    last: Millis,
}

impl Throttle {
    /// A full bucket: `rate` bytes per second (0 is treated as 1), up to `burst` bytes at once.
    pub fn new(rate: u64, burst: u64, now: Millis) -> Throttle {
        Throttle {
            rate: rate.max(1),
            burst,
            tokens: i128::from(burst) * 1000,
            last: now,
        }
    }

    /// Changes the rate (for example when the number of running transfers changes).
    pub fn set_rate(&mut self, rate: u64, now: Millis) {
        self.refill(now);
        self.rate = rate.max(1);
    }

    fn refill(&mut self, now: Millis) {
        let elapsed = now.saturating_sub(self.last);
        self.last = self.last.max(now);
        // `rate` bytes per second is `rate` milli-bytes per millisecond.
        let cap = i128::from(self.burst) * 1000;
        self.tokens = (self.tokens + i128::from(elapsed) * i128::from(self.rate)).min(cap);
    }

    /// Spends `bytes` and returns the milliseconds to wait before the next read.
    pub fn take(&mut self, bytes: u64, now: Millis) -> Millis {
        self.refill(now);
        self.tokens -= i128::from(bytes) * 1000;
        if self.tokens >= 0 {
            0
        } else {
            let debt = -self.tokens;
            let rate = i128::from(self.rate);
            let wait = (debt + rate - 1) / rate;
            u64::try_from(wait).unwrap_or(u64::MAX)
        }
    }
}
