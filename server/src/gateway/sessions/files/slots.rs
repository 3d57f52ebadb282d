//! How many file transfers run at once: at most `files.max_concurrent` in the gateway and
//! `files.max_concurrent_per_user` for one person (over all their sessions). A transfer holds a
//! [`Permit`] from before its first byte is read until its last byte has left the gateway; the
//! permit is given back when it is dropped, so a transfer that fails, is refused by the node or
//! whose person goes away gives its slot back as well. A transfer over a limit is refused at
//! once (nothing waits in a queue, nothing reaches the node): the person tries again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Seconds a refused transfer is told to wait (`Retry-After`).
pub const RETRY_AFTER: u64 = 5;

/// Why a transfer may not start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The person runs `files.max_concurrent_per_user` transfers already.
    Person(String),
    /// The gateway runs `files.max_concurrent` transfers already.
    Gateway(String),
}

/// The limits, shared by every request of the gateway.
#[derive(Debug)]
pub struct Slots {
    max: usize,
    per_user: usize,
    at_once: Arc<Semaphore>,
    people: Arc<Mutex<HashMap<i64, usize>>>,
}

/// A running transfer's slot; given back when dropped.
#[derive(Debug)]
pub struct Permit {
    user_id: i64,
    people: Arc<Mutex<HashMap<i64, usize>>>,
    _permit: OwnedSemaphorePermit,
}

impl Slots {
    /// At most `max` transfers at once, `per_user` of them one person's (both at least 1:
    /// the configuration is validated).
    pub fn new(max: u64, per_user: u64) -> Self {
        let max = usize::try_from(max).unwrap_or(usize::MAX).max(1);
        let per_user = usize::try_from(per_user).unwrap_or(usize::MAX).max(1);
        Self {
            max,
            per_user,
            at_once: Arc::new(Semaphore::new(max)),
            people: Arc::default(),
        }
    }

    /// A slot for a transfer by `user_id`, or why not.
    pub fn admit(&self, user_id: i64) -> Result<Permit, Refused> {
        let mut people = self.people.lock().unwrap_or_else(PoisonError::into_inner);
        let running = people.get(&user_id).copied().unwrap_or(0);
        if running >= self.per_user {
            let transfers = if running == 1 {
                "a file transfer".to_owned()
            } else {
                format!("{running} file transfers")
            };
            return Err(Refused::Person(format!(
                "you have {transfers} running on this gateway, as many as one person may run at \
                 once (files.max_concurrent_per_user = {}); try again when it has finished. \
                 Nothing was sent to the node",
                self.per_user
            )));
        }
        let Ok(permit) = self.at_once.clone().try_acquire_owned() else {
            return Err(Refused::Gateway(format!(
                "the gateway is running {} file transfers, as many as it runs at once \
                 (files.max_concurrent = {}); try again in a few seconds. Nothing was sent to \
                 the node",
                self.max, self.max
            )));
        };
        *people.entry(user_id).or_default() += 1;
        Ok(Permit {
            user_id,
            people: self.people.clone(),
            _permit: permit,
        })
    }

    /// Transfers running now.
    pub fn in_flight(&self) -> usize {
        self.max.saturating_sub(self.at_once.available_permits())
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut people = self.people.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(running) = people.get_mut(&self.user_id) {
            *running = running.saturating_sub(1);
            if *running == 0 {
                people.remove(&self.user_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_person_and_the_gateway_are_each_capped_and_slots_come_back() {
        let slots = Slots::new(3, 2);
        let a1 = slots.admit(1).unwrap();
        let a2 = slots.admit(1).unwrap();
        assert_eq!(slots.in_flight(), 2);
        let Err(Refused::Person(why)) = slots.admit(1) else {
            panic!("a third of one person's transfers is refused");
        };
        assert!(
            why.contains("2 file transfers") && why.contains("files.max_concurrent_per_user = 2"),
            "{why}"
        );
        let b1 = slots.admit(2).unwrap();
        assert_eq!(slots.in_flight(), 3);
        let Err(Refused::Gateway(why)) = slots.admit(3) else {
            panic!("a fourth transfer in the gateway is refused");
        };
        assert!(why.contains("files.max_concurrent = 3"), "{why}");
        // The person's limit is told first: their own transfers are what they can wait for.
        assert!(matches!(slots.admit(1), Err(Refused::Person(_))));
        // A refusal takes nothing.
        assert_eq!(slots.in_flight(), 3);

        drop(a1);
        assert_eq!(slots.in_flight(), 2);
        let c1 = slots.admit(3).unwrap();
        assert!(matches!(slots.admit(1), Err(Refused::Gateway(_))));
        drop((a2, b1, c1));
        assert_eq!(slots.in_flight(), 0);
        assert!(slots.people.lock().unwrap().is_empty(), "nobody is kept");
        let _ = slots.admit(1).unwrap();
    }

    #[test]
    fn one_transfer_each_is_worded_in_the_singular() {
        let slots = Slots::new(4, 1);
        let _a = slots.admit(7).unwrap();
        let Err(Refused::Person(why)) = slots.admit(7) else {
            panic!("refused");
        };
        assert!(why.starts_with("you have a file transfer running"), "{why}");
        assert!(why.contains("Nothing was sent to the node"), "{why}");
    }
}
