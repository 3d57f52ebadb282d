//! Bounds on searching the recordings, which scans lines with a leading wildcard: one search
//! at a time per person, at most a number per minute per person, and at most
//! [`MAX_AT_ONCE`] in the whole gateway. A search whose answer was given up on (it took too
//! long) keeps its person's slot until the database is done with it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Searches running at once in the gateway.
pub const MAX_AT_ONCE: usize = 4;
/// The window of the per-person rate.
const MINUTE: Duration = Duration::from_secs(60);

/// Why a search may not start now, and when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// For the person.
    pub message: String,
    /// Seconds to wait.
    pub retry_after: u64,
}

#[derive(Debug, Default)]
struct Person {
    running: bool,
    /// When their searches of the last minute started, oldest first.
    started: VecDeque<Instant>,
}

/// The bounds, shared by every request.
#[derive(Debug)]
pub struct Limiter {
    per_minute: usize,
    people: Arc<Mutex<HashMap<i64, Person>>>,
    at_once: Arc<Semaphore>,
}

/// A running search's place; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    user_id: i64,
    people: Arc<Mutex<HashMap<i64, Person>>>,
    _permit: OwnedSemaphorePermit,
}

impl Limiter {
    /// At most `per_minute` searches a minute per person.
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: per_minute as usize,
            people: Arc::default(),
            at_once: Arc::new(Semaphore::new(MAX_AT_ONCE)),
        }
    }

    /// A slot for a search by `user_id` at `now`, or why not.
    pub fn begin(&self, user_id: i64, now: Instant) -> Result<Slot, Refused> {
        let mut people = self.people.lock().unwrap_or_else(PoisonError::into_inner);
        // Forget people with nothing running and nothing in the window.
        people.retain(|_, p| {
            while p
                .started
                .front()
                .is_some_and(|t| now.duration_since(*t) >= MINUTE)
            {
                p.started.pop_front();
            }
            p.running || !p.started.is_empty()
        });
        let person = people.entry(user_id).or_default();
        if person.running {
            return Err(Refused {
                message: "a search of yours is still running; try again when it has finished"
                    .into(),
                retry_after: 1,
            });
        }
        if person.started.len() >= self.per_minute {
            let oldest = person.started.front().copied().unwrap_or(now);
            let wait = MINUTE.saturating_sub(now.duration_since(oldest));
            return Err(Refused {
                message: format!(
                    "at most {} searches a minute; try again in {} s",
                    self.per_minute,
                    wait.as_secs().max(1)
                ),
                retry_after: wait.as_secs().max(1),
            });
        }
        let Ok(permit) = self.at_once.clone().try_acquire_owned() else {
            return Err(Refused {
                message: "the gateway is running as many searches as it allows; try again in a \
                          moment"
                    .into(),
                retry_after: 1,
            });
        };
        person.running = true;
        person.started.push_back(now);
        Ok(Slot {
            user_id,
            people: self.people.clone(),
            _permit: permit,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut people = self.people.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(person) = people.get_mut(&self.user_id) {
            person.running = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_at_a_time_per_person_and_a_rate_per_minute() {
        let limiter = Limiter::new(3);
        let t0 = Instant::now();
        let first = limiter.begin(1, t0).unwrap();
        let refused = limiter.begin(1, t0).unwrap_err();
        assert!(refused.message.contains("still running"), "{refused:?}");
        let other = limiter.begin(2, t0).unwrap();
        drop((first, other));
        drop(limiter.begin(1, t0 + Duration::from_secs(10)).unwrap());
        drop(limiter.begin(1, t0 + Duration::from_secs(20)).unwrap());
        let refused = limiter.begin(1, t0 + Duration::from_secs(30)).unwrap_err();
        assert_eq!(refused.retry_after, 30);
        assert_eq!(
            refused.message,
            "at most 3 searches a minute; try again in 30 s"
        );
        assert!(limiter.begin(1, t0 + Duration::from_secs(61)).is_ok());
    }

    #[test]
    fn the_gateway_runs_a_bounded_number_at_once() {
        let limiter = Limiter::new(100);
        let t0 = Instant::now();
        let slots: Vec<Slot> = (0..MAX_AT_ONCE as i64)
            .map(|user| limiter.begin(user, t0).unwrap())
            .collect();
        let refused = limiter.begin(99, t0).unwrap_err();
        assert!(refused.message.contains("as many searches"), "{refused:?}");
        drop(slots);
        assert!(limiter.begin(99, t0).is_ok());
    }
}
