//! Eager start: a run started in a process whose worker has a free slot is claimed
//! by that worker in the transaction that creates it (as Temporal's eager workflow
//! start and DBOS do), and handed over in memory. That saves a wake-up, a claim
//! query and its commit on every start; the run's durable history is the same
//! (RUN_QUEUED then RUN_STARTED, one commit instead of two).

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::store::leases::Claim;

/// A run claimed at its start, with the slot it runs in.
pub(crate) type Handoff = (Claim, OwnedSemaphorePermit);

/// A worker of this process offering its free slots to new runs.
pub(crate) struct Offer {
    pub owner: String,
    pub slots: Arc<Semaphore>,
    pub handoff: mpsc::UnboundedSender<Handoff>,
}

/// The offers of this process's workers (normally one).
#[derive(Default)]
pub(crate) struct Offers(Mutex<Vec<Offer>>);

/// A free slot taken for a run about to start.
pub(crate) struct Slot {
    pub owner: String,
    pub permit: OwnedSemaphorePermit,
    pub handoff: mpsc::UnboundedSender<Handoff>,
}

impl Offers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Offer>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, offer: Offer) {
        self.lock().push(offer);
    }

    /// Withdraws `owner`'s offer; slots already taken are handed over or fail to be.
    pub fn withdraw(&self, owner: &str) {
        self.lock().retain(|o| o.owner != owner);
    }

    /// A free slot of some worker that still takes runs, if any.
    pub fn take(&self) -> Option<Slot> {
        let mut offers = self.lock();
        // A worker that ended without withdrawing (its task was dropped) takes nothing.
        offers.retain(|o| !o.handoff.is_closed());
        offers.iter().find_map(|o| {
            let permit = o.slots.clone().try_acquire_owned().ok()?;
            Some(Slot {
                owner: o.owner.clone(),
                permit,
                handoff: o.handoff.clone(),
            })
        })
    }
}
