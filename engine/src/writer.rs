//! The checkpoint writer: one task per process that groups the checkpoints of all
//! runs into batches, commits each batch at once, and publishes what committed.

use std::collections::HashSet;

use sea_orm::DatabaseConnection;
use tokio::sync::{mpsc, oneshot};

use crate::bus::EventBus;
use crate::event::Event;
use crate::store::checkpoint::{self, Checkpoint, Outcome};
use crate::{Error, Result};

struct Pending {
    checkpoint: Checkpoint,
    reply: oneshot::Sender<Result<Vec<Event>>>,
}

/// Cheap-to-clone handle to the writer tasks.
///
/// Several writers commit concurrently on Postgres (the database then flushes many
/// commits with one WAL write); a run always goes to the same writer, which keeps
/// its checkpoints in order. SQLite has one writer: it serialises writes anyway.
#[derive(Clone)]
pub struct CheckpointWriter {
    shards: std::sync::Arc<[mpsc::Sender<Pending>]>,
}

impl CheckpointWriter {
    /// Starts `shards` writer tasks; they end when every handle is dropped.
    pub fn spawn(db: DatabaseConnection, bus: EventBus, batch_max: usize, shards: usize) -> Self {
        let shards: Vec<_> = (0..shards.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(4096);
                tokio::spawn(run(db.clone(), bus.clone(), rx, batch_max.max(1)));
                tx
            })
            .collect();
        Self {
            shards: shards.into(),
        }
    }

    fn shard(&self, run_id: crate::ids::RunId) -> &mpsc::Sender<Pending> {
        // UUIDv7: the low bits are random, so this spreads runs evenly.
        let idx = (run_id.0.as_u128() as usize) % self.shards.len();
        &self.shards[idx]
    }

    /// Queues a checkpoint; the returned receiver resolves once it is durable (or
    /// rejected). Checkpoints of one run commit in the order they were submitted.
    pub async fn submit(&self, checkpoint: Checkpoint) -> oneshot::Receiver<Result<Vec<Event>>> {
        let (reply, rx) = oneshot::channel();
        let shard = self.shard(checkpoint.fence.run_id);
        if let Err(mpsc::error::SendError(p)) = shard.send(Pending { checkpoint, reply }).await {
            let _ = p
                .reply
                .send(Err(Error::Invalid("checkpoint writer has stopped".into())));
        }
        rx
    }

    /// Submits and waits until the checkpoint is durable.
    pub async fn commit(&self, checkpoint: Checkpoint) -> Result<Vec<Event>> {
        let run_id = checkpoint.fence.run_id;
        self.submit(checkpoint)
            .await
            .await
            .unwrap_or_else(|_| Err(Error::LeaseLost(run_id.to_string())))
    }
}

async fn run(
    db: DatabaseConnection,
    bus: EventBus,
    mut rx: mpsc::Receiver<Pending>,
    batch_max: usize,
) {
    let mut carry: Option<Pending> = None;
    loop {
        let first = match carry.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let mut runs = HashSet::from([first.checkpoint.fence.run_id]);
        let mut batch = vec![first];
        while batch.len() < batch_max {
            match rx.try_recv() {
                Ok(p) if runs.insert(p.checkpoint.fence.run_id) => batch.push(p),
                // A second checkpoint of the same run waits for the next batch, which
                // keeps that run's writes in order.
                Ok(p) => {
                    carry = Some(p);
                    break;
                }
                Err(_) => break,
            }
        }
        let checkpoints: Vec<Checkpoint> = batch.iter().map(|p| p.checkpoint.clone()).collect();
        let now = chrono::Utc::now();
        let started = std::time::Instant::now();
        let committed = checkpoint::commit(&db, &checkpoints, now).await;
        tracing::trace!(
            batch = checkpoints.len(),
            micros = started.elapsed().as_micros() as u64,
            "checkpoint batch"
        );
        match committed {
            Ok(outcomes) => {
                for (pending, outcome) in batch.into_iter().zip(outcomes) {
                    let result = match outcome {
                        Outcome::Committed(events) => {
                            bus.publish_events(&events);
                            Ok(events)
                        }
                        Outcome::LeaseLost => Err(Error::LeaseLost(
                            pending.checkpoint.fence.run_id.to_string(),
                        )),
                    };
                    let _ = pending.reply.send(result);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, batch = batch.len(), "checkpoint batch failed");
                let message = e.to_string();
                for pending in batch {
                    let _ = pending.reply.send(Err(Error::Unavailable(message.clone())));
                }
            }
        }
    }
}
