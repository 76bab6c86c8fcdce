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

/// Cheap-to-clone handle to the writer task.
#[derive(Clone)]
pub struct CheckpointWriter {
    tx: mpsc::Sender<Pending>,
}

impl CheckpointWriter {
    /// Starts the writer task; it ends when every handle is dropped.
    pub fn spawn(db: DatabaseConnection, bus: EventBus, batch_max: usize) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(run(db, bus, rx, batch_max.max(1)));
        Self { tx }
    }

    /// Queues a checkpoint; the returned receiver resolves once it is durable (or
    /// rejected). Checkpoints of one run commit in the order they were submitted.
    pub async fn submit(&self, checkpoint: Checkpoint) -> oneshot::Receiver<Result<Vec<Event>>> {
        let (reply, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError(p)) = self.tx.send(Pending { checkpoint, reply }).await {
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
        match checkpoint::commit(&db, &checkpoints, now).await {
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
                    let _ = pending
                        .reply
                        .send(Err(Error::Database(sea_orm::DbErr::Custom(
                            message.clone(),
                        ))));
                }
            }
        }
    }
}
