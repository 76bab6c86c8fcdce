//! What every branch of one execution of one run shares: the fence, the recorded
//! steps and waits, what is parked, what is in flight, and why to halt.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::Value as Json;
use tokio::sync::Notify;

use crate::config::EngineConfig;
use crate::event::NewEvent;
use crate::ids::{ApprovalId, QuestionId};
use crate::store::approvals::Approval;
use crate::store::checkpoint::{Checkpoint, NewApproval, NewQuestion};
use crate::store::leases::Fence;
use crate::store::questions::Question;
use crate::store::steps::Step;
use crate::usage::Usage;
use crate::writer::CheckpointWriter;

/// Why a run is stopping at a boundary.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Park {
    Pause,
    Shutdown,
    Approval { wake_at: DateTime<Utc> },
    Input { wake_at: DateTime<Utc> },
    Retry { wake_at: DateTime<Utc> },
    Sleep { wake_at: DateTime<Utc> },
}

/// Why a run's execution must end at once, without writing anything more.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Halt {
    LeaseLost,
    Cancelled,
    Database(String),
    /// The database refused a checkpoint's data: the run fails with this reason.
    Refused(String),
}

#[derive(Default)]
pub(crate) struct ParkState {
    pub parks: Vec<Park>,
    pub approvals: Vec<NewApproval>,
    pub questions: Vec<NewQuestion>,
    pub events: Vec<NewEvent>,
    /// Already-pending approvals and questions this execution parked on.
    pub waiting_approvals: Vec<ApprovalId>,
    pub waiting_questions: Vec<QuestionId>,
}

/// State shared by every branch of one execution of one run.
pub(crate) struct RunShared {
    pub fence: Fence,
    pub input: Json,
    pub writer: CheckpointWriter,
    pub config: Arc<EngineConfig>,
    pub deadline_at: DateTime<Utc>,
    pub expirer: Arc<dyn HumanWaits>,
    pub(super) memo: Mutex<HashMap<String, Step>>,
    pub(super) approvals: Mutex<HashMap<String, Approval>>,
    pub(super) questions: Mutex<HashMap<String, Question>>,
    pub(super) used_keys: Mutex<HashSet<String>>,
    pub park: Mutex<ParkState>,
    pub(super) in_flight: AtomicUsize,
    pub pause: AtomicBool,
    pub shutdown: AtomicBool,
    pub(super) halt: Mutex<Option<Halt>>,
    /// Wakes the worker: a park became releasable, or the run must halt.
    pub wakeup: Notify,
    pub info: super::RunInfo,
    /// What the run's steps used: the recorded ones, plus this execution's attempts.
    pub(super) usage: Mutex<Usage>,
    /// Every context's buffer of emitted events, so that what is left when the
    /// workflow ends goes out with its final commit.
    emit_buffers: Mutex<Vec<Arc<Mutex<Vec<NewEvent>>>>>,
    /// Where live-only events go (this process's bus, and other processes').
    live: crate::bus::EventBus,
    /// The engine executing the run, for reading configuration (`StepContext::engine`).
    pub engine: crate::Engine,
    /// Step results not committed yet: the run's next commit carries them, and no
    /// step starts before they are durable (see [`RunShared::hold`]).
    held: Mutex<Option<Checkpoint>>,
    /// Taken for every submission of this run's checkpoints, and by a flush until
    /// what it flushed is durable: submissions keep their order, and a flush returns
    /// only once every result held before it is durable.
    pub submitting: Arc<tokio::sync::Mutex<()>>,
    /// A delayed flush of held results is pending.
    flush_pending: AtomicBool,
}

/// Expiring a human wait is a fenced write outside the checkpoint batch (it must
/// lose cleanly to a concurrent decision); the worker provides it.
#[async_trait::async_trait]
pub(crate) trait HumanWaits: Send + Sync {
    async fn expire_approval(&self, fence: &Fence, approval: &Approval) -> crate::Result<Approval>;
    async fn expire_question(&self, fence: &Fence, question: &Question) -> crate::Result<Question>;
}

impl RunShared {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        fence: Fence,
        input: Json,
        writer: CheckpointWriter,
        config: Arc<EngineConfig>,
        info: super::RunInfo,
        expirer: Arc<dyn HumanWaits>,
        live: crate::bus::EventBus,
        steps: Vec<Step>,
        approvals: Vec<Approval>,
        questions: Vec<Question>,
        engine: crate::Engine,
    ) -> Self {
        let usage = steps.iter().map(|s| s.usage).sum();
        let deadline_at = info.deadline_at;
        Self {
            info,
            usage: Mutex::new(usage),
            emit_buffers: Mutex::new(Vec::new()),
            live,
            engine,
            fence,
            input,
            writer,
            config,
            deadline_at,
            expirer,
            memo: Mutex::new(steps.into_iter().map(|s| (s.key.clone(), s)).collect()),
            approvals: Mutex::new(
                approvals
                    .into_iter()
                    .map(|a| (a.step_key.clone(), a))
                    .collect(),
            ),
            questions: Mutex::new(
                questions
                    .into_iter()
                    .map(|q| (q.step_key.clone(), q))
                    .collect(),
            ),
            used_keys: Mutex::new(HashSet::new()),
            park: Mutex::new(ParkState::default()),
            in_flight: AtomicUsize::new(0),
            pause: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            halt: Mutex::new(None),
            wakeup: Notify::new(),
            held: Mutex::new(None),
            submitting: Arc::default(),
            flush_pending: AtomicBool::new(false),
        }
    }

    /// Keeps a step's result checkpoint instead of committing it at once: the next
    /// step flushes it before it starts (nothing that depends on a result runs before
    /// the result is durable), and any other commit of the run, its final one
    /// included, carries it along. A run whose last step is followed by its end thus
    /// commits both at once. Should nothing come along, it is flushed after
    /// `step_result_hold`, so that watchers are not kept waiting.
    pub(super) fn hold(self: &Arc<Self>, cp: Checkpoint) {
        {
            let mut held = lock(&self.held);
            let mut cp = cp;
            if let Some(earlier) = held.take() {
                cp.absorb_earlier(earlier);
            }
            *held = Some(cp);
        }
        if !self.flush_pending.swap(true, Ordering::SeqCst) {
            let shared = self.clone();
            let delay = self.config.step_result_hold;
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                shared.flush_pending.store(false, Ordering::SeqCst);
                if let Err(e) = shared.flush().await {
                    shared.halt_on(e);
                }
            });
        }
    }

    /// Commits the held results, if any; returns once every result held before the
    /// call is durable.
    pub(super) async fn flush(&self) -> crate::Result<()> {
        let _order = self.submitting.lock().await;
        let Some(cp) = self.take_held() else {
            return Ok(());
        };
        self.writer.commit(cp).await.map(drop)
    }

    /// Commits `cp` behind whatever is held, in the run's order, and returns once it
    /// is durable.
    pub(super) async fn commit(&self, mut cp: Checkpoint) -> crate::Result<Vec<crate::Event>> {
        let _order = self.submitting.lock().await;
        if let Some(held) = self.take_held() {
            cp.absorb_earlier(held);
        }
        self.writer.commit(cp).await
    }

    /// Submits `cp` behind whatever is held, in the run's order; the receiver
    /// resolves once it is durable.
    pub(super) async fn submit(
        &self,
        mut cp: Checkpoint,
    ) -> tokio::sync::oneshot::Receiver<crate::Result<Vec<crate::Event>>> {
        let _order = self.submitting.lock().await;
        if let Some(held) = self.take_held() {
            cp.absorb_earlier(held);
        }
        self.writer.submit(cp).await
    }

    /// The held results, taken out (the caller commits them, or drops them with an
    /// execution that halts).
    pub fn take_held(&self) -> Option<Checkpoint> {
        lock(&self.held).take()
    }

    /// Stops this execution after a failed write: a lost lease means someone else
    /// owns the run now; a refusal fails the run; anything else means the database
    /// is unavailable.
    pub(super) fn halt_on(&self, e: crate::Error) {
        self.halt(match e {
            crate::Error::LeaseLost(_) => Halt::LeaseLost,
            crate::Error::Refused(message) => Halt::Refused(message),
            crate::Error::Unavailable(message) => Halt::Database(message),
            other => Halt::Database(other.to_string()),
        });
    }

    pub(super) fn add_usage(&self, usage: Usage) {
        *lock(&self.usage) += usage;
    }

    /// A new buffer for a context's emitted events, registered for the run's end.
    pub(super) fn emit_buffer(&self) -> Arc<Mutex<Vec<NewEvent>>> {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        lock(&self.emit_buffers).push(buffer.clone());
        buffer
    }

    /// Events emitted after every context's last durable operation (they go out with
    /// the run's final commit).
    pub fn take_leftover_events(&self) -> Vec<NewEvent> {
        lock(&self.emit_buffers)
            .iter()
            .flat_map(|b| std::mem::take(&mut *lock(b)))
            .collect()
    }

    pub(super) fn live(&self, event: super::LiveEvent) {
        self.live.publish_live(event);
    }

    pub fn halt_reason(&self) -> Option<Halt> {
        lock(&self.halt).clone()
    }

    pub fn halt(&self, reason: Halt) {
        let mut h = lock(&self.halt);
        if h.is_none() {
            *h = Some(reason);
        }
        drop(h);
        self.wakeup.notify_one();
    }

    /// True when the run has parked branches and nothing left in flight.
    pub fn releasable(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0 && !lock(&self.park).parks.is_empty()
    }

    pub fn has_human_waits(&self) -> bool {
        !lock(&self.approvals).is_empty() || !lock(&self.questions).is_empty()
    }

    pub(super) fn parked(&self, park: Park) {
        lock(&self.park).parks.push(park);
        if self.in_flight.load(Ordering::SeqCst) == 0 {
            self.wakeup.notify_one();
        }
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking step is caught before it can poison these locks; recover anyway.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts a step as in flight for as long as it lives.
pub(super) struct InFlight<'a>(&'a RunShared);

impl<'a> InFlight<'a> {
    pub(super) fn new(shared: &'a RunShared) -> Self {
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1
            && !lock(&self.0.park).parks.is_empty()
        {
            self.0.wakeup.notify_one();
        }
    }
}
