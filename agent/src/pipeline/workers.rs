//! The pipeline's blocking side: jobs wait in one queue, and a few threads of the
//! blocking pool take them in turn — plugin calls, admission, and the group commit
//! when a worker is to lead it.
//!
//! Why not one `spawn_blocking` per job: each one wakes a pool thread, and under load
//! (cameras posting one event per request) those wake-ups were the largest item of the
//! agent's profile. Here a worker takes the next job as soon as it is done with one,
//! so a burst of requests costs one wake-up, and a job's producer is woken once, by
//! its answer (which the group commit sends: see `queue::commit`).

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::{produce, Accepted, Job, PipelineError, PluginSet};
use crate::queue::{Lead, Queue};
use crate::sync::lock;

/// Where a job's outcome goes.
pub(super) type Answer = oneshot::Sender<Result<Accepted, PipelineError>>;

/// A job with the plugin set it was submitted under (a reload does not change the
/// plugins of a job already accepted).
pub(super) struct Submitted {
    pub job: Job,
    pub set: Arc<PluginSet>,
    pub answer: Answer,
}

/// The job queue and its workers.
pub(super) struct Workers {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    queue: Arc<Queue>,
    /// Workers at most: one per core for plugin calls, and one more that may be
    /// waiting on the disk while it leads a commit.
    max: usize,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Submitted>,
    running: usize,
}

impl Workers {
    pub fn new(queue: Arc<Queue>) -> Workers {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Workers {
            inner: Arc::new(Inner {
                state: Mutex::default(),
                queue,
                max: cores + 1,
            }),
        }
    }

    /// Queues `submitted`; starts a worker if none runs, or if jobs are waiting and the
    /// workers are busy (one may be leading a commit for a while).
    pub fn submit(&self, submitted: Submitted) {
        let start = {
            let mut state = lock(&self.inner.state);
            state.jobs.push_back(submitted);
            let waiting = state.jobs.len();
            let start = state.running == 0 || (waiting > 1 && state.running < self.inner.max);
            if start {
                state.running += 1;
            }
            start
        };
        if start {
            let inner = Arc::clone(&self.inner);
            tokio::task::spawn_blocking(move || inner.work());
        }
    }
}

impl Inner {
    /// Takes jobs until none is waiting. Blocking.
    fn work(&self) {
        loop {
            let next = {
                let mut state = lock(&self.state);
                let next = state.jobs.pop_front();
                if next.is_none() {
                    state.running -= 1;
                }
                next
            };
            let Some(submitted) = next else { return };
            // A panic is a bug (plugin panics are caught where they happen); it costs
            // its own job (answered `Lost` as its answer drops), not the worker.
            let lead = std::panic::catch_unwind(AssertUnwindSafe(|| self.admit(submitted)));
            if let Ok(Some(lead)) = lead {
                lead.run();
            }
        }
    }

    /// The plugin calls of one job and the admission of their messages; the answer
    /// goes out when the group commit has them (or at once, on an error).
    fn admit(&self, submitted: Submitted) -> Option<Lead> {
        let Submitted { job, set, answer } = submitted;
        match produce(&set, job) {
            Ok((messages, events)) => {
                let accepted = Accepted {
                    events,
                    messages: messages.len(),
                };
                self.queue.enqueue_then(&messages, move |result| {
                    let _ = answer.send(result.map(|()| accepted).map_err(PipelineError::from));
                })
            }
            Err(e) => {
                let _ = answer.send(Err(e));
                None
            }
        }
    }
}
