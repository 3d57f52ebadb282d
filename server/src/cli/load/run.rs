//! The phases of a run: deploy (or connect), sign in, baseline, open the gateway sessions at
//! the asked rate (attaching the active ones), open the direct ones, sample with the
//! sessions up, type on both paths at once, sample again, clean up, report.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::direct;
use super::gateway::{self, Gateway, SignedIn};
use super::profile::{Mode, Profile};
use super::report::{self, OpenFiles, PathReport, ProcessReport, ProfileReport, Report, Sessions};
use super::spawn::{self, Deployment};
use super::stats::{self, Errors, Latencies, ProcSample};
use super::typing::{Plan, Typing};

/// Starts (and sign-ins) in flight at once.
const IN_FLIGHT: usize = 64;
/// Time kept for what follows the starts (beyond settling and typing): waiting for the last
/// echoes, sampling, ending sessions on a deployment that outlives the run.
const AFTER_STARTS: Duration = Duration::from_secs(60);

/// Open files the busiest process of the run needs, plus a margin. The gateway holds per
/// session its data channel to the emulator and, until the session has been quiet for
/// `sessions.compact_after_seconds` (default 30), its recording file, closed then (measured
/// before that change: 14,344 open at 7,150 sessions); and one per attach. So an idle session
/// holds two for its first quiet spell, at most the starts of that spell at once, and one
/// after it. The emulator holds one per session; this process one per typing session.
pub fn fds_needed(profile: &Profile) -> u64 {
    let own = profile.active + profile.direct;
    let children = match profile.mode {
        Mode::SelfContained { compact_after, .. } => {
            let quiet = compact_after.unwrap_or(30) as f64;
            let fresh = ((profile.start_rate * quiet).ceil() as u64).min(profile.idle);
            (3 * profile.active + profile.idle + fresh)
                .max(profile.gateway_sessions() + profile.direct)
        }
        Mode::External { .. } => 0,
    };
    own.max(children) + 256
}

/// Where the run's gateway and emulator are, and their processes when known.
struct Target {
    gateway: Gateway,
    emulator_url: Option<String>,
    gateway_pid: Option<u32>,
    emulator_pid: Option<u32>,
    users: Vec<(String, String)>,
}

/// Runs the profile; the report, or why the run could not be made.
pub async fn run(profile: Profile, limit: u64) -> Result<Report, String> {
    let (deployment, target) = match &profile.mode {
        Mode::SelfContained {
            database_url,
            compact_after,
            ..
        } => {
            eprintln!("starting the emulator and the gateway …");
            let d = spawn::deploy(&profile, database_url.as_deref(), *compact_after).await?;
            let target = Target {
                gateway: Gateway::new(&d.gateway_url)?,
                emulator_url: Some(d.emulator_url.clone()),
                gateway_pid: Some(d.gateway.pid),
                emulator_pid: Some(d.emulator.pid),
                users: d.users.clone(),
            };
            (Some(d), target)
        }
        Mode::External {
            gateway,
            emulator,
            gateway_pid,
            users,
        } => (
            None,
            Target {
                gateway: Gateway::new(gateway)?,
                emulator_url: emulator.clone(),
                gateway_pid: *gateway_pid,
                emulator_pid: None,
                users: users.clone(),
            },
        ),
    };
    let bound = profile.deadline();
    // The starts stop being asked early enough for the rest of the run, so that a run whose
    // starts are slower than asked still reports what it measured; the whole run's bound
    // (with a margin for the phases after the starts) stops it only if something hangs.
    let after_starts = 2 * profile.settle + profile.warmup + profile.duration + AFTER_STARTS;
    let starts_until = Instant::now() + bound.saturating_sub(after_starts);
    let mut outcome = tokio::time::timeout(
        bound + AFTER_STARTS,
        drive(&profile, &target, limit, starts_until),
    )
    .await;
    if let (Some(d), Ok(Ok(report))) = (&deployment, &mut outcome) {
        report.audit_chain = Some(match spawn::verify_audit(d).await {
            Ok(line) | Err(line) => line,
        });
    }
    if let Some(d) = deployment {
        let keep = matches!(profile.mode, Mode::SelfContained { keep: true, .. });
        if keep {
            eprintln!("kept {}", d.dir.display());
        }
        stop(d, keep).await;
    }
    match outcome {
        Ok(result) => result,
        Err(_) => Err(format!(
            "the run took longer than its bound of {} s and was stopped",
            bound.as_secs()
        )),
    }
}

async fn stop(d: Deployment, keep: bool) {
    d.stop(keep).await;
}

/// Waits `settle`, saying the gateway's RSS every [`SETTLE_STEP`] meanwhile (when its pid is
/// known): whether its memory had stopped falling when it is read is there to see.
async fn settle_watching(settle: Duration, target: &Target) {
    const SETTLE_STEP: Duration = Duration::from_secs(5);
    let until = Instant::now() + settle;
    let began = Instant::now();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(SETTLE_STEP)).await;
        if let Some(Ok(s)) = target.gateway_pid.map(stats::sample) {
            eprintln!(
                "  {:>4.0} s: gateway RSS {:.1} MiB",
                began.elapsed().as_secs_f64(),
                s.rss_kib as f64 / 1024.0
            );
        }
    }
}

/// CPU and RSS of the gateway and the emulator, when their pids are known.
#[derive(Clone, Copy)]
struct Samples {
    gateway: Option<ProcSample>,
    emulator: Option<ProcSample>,
}

fn sample(target: &Target, errors: &Errors) -> Samples {
    let one = |pid: Option<u32>| {
        pid.and_then(|pid| match stats::sample(pid) {
            Ok(s) => Some(s),
            Err(e) => {
                errors.add("sample", &e);
                None
            }
        })
    };
    Samples {
        gateway: one(target.gateway_pid),
        emulator: one(target.emulator_pid),
    }
}

async fn drive(
    profile: &Profile,
    target: &Target,
    limit: u64,
    starts_until: Instant,
) -> Result<Report, String> {
    let errors = Errors::default();
    eprintln!("signing in {} users …", target.users.len());
    let signed = sign_in(target, &errors).await?;
    // The sign-ins' password hashing (tens of MiB while it runs) is let go of before the
    // baseline, as the sessions' memory is before theirs.
    tokio::time::sleep(profile.settle).await;
    let baseline = sample(target, &errors);

    eprintln!("opening {} gateway sessions …", profile.gateway_sessions());
    let (attached, idle_ids, gw_starts) =
        open_gateway(profile, target, &signed, &errors, starts_until).await;
    let aws = match &target.emulator_url {
        Some(url) if profile.direct > 0 => Some(direct::clients(url).await),
        _ => None,
    };
    eprintln!("opening {} direct sessions …", profile.direct);
    let (direct_handles, direct_starts) = match &aws {
        Some(aws) => open_direct(profile, aws, &errors, starts_until).await,
        None => (Vec::new(), None),
    };
    if !profile.settle.is_zero() {
        eprintln!("settling for {} s …", profile.settle.as_secs_f64());
    }
    settle_watching(profile.settle, target).await;
    let up = sample(target, &errors);

    let sessions = Sessions {
        gateway_asked: profile.gateway_sessions(),
        gateway_started: (attached.len() + idle_ids.len()) as u64,
        gateway_attached: attached.len() as u64,
        direct_asked: profile.direct,
        direct_started: direct_handles.len() as u64,
    };
    eprintln!(
        "typing for {} s (after {} s warm-up) …",
        profile.duration.as_secs_f64(),
        profile.warmup.as_secs_f64()
    );
    let typing_started = Instant::now();
    let (gw, dr, gw_ids, dr_ids) = type_all(profile, attached, direct_handles, &errors).await;
    let typing_seconds = typing_started.elapsed().as_secs_f64();
    let end = sample(target, &errors);

    if matches!(profile.mode, Mode::External { .. }) {
        eprintln!("ending the sessions …");
        let all: Vec<(usize, String)> = gw_ids.into_iter().chain(idle_ids).collect();
        end_sessions(target, &signed, all, aws.as_ref(), dr_ids, &errors).await;
    }

    let gateway_rtt = gw.2.summary();
    let direct_rtt = dr.2.summary();
    let started = sessions.gateway_started;
    let process = |pick: fn(&Samples) -> Option<ProcSample>, pid: Option<u32>, n: u64| {
        let (b, u, e) = (pick(&baseline)?, pick(&up)?, pick(&end)?);
        let typing_cpu = e.cpu_seconds - u.cpu_seconds;
        Some(ProcessReport {
            pid: pid?,
            baseline: b,
            sessions_up: u,
            end: e,
            typing_cpu_seconds: typing_cpu,
            typing_cores: typing_cpu / typing_seconds.max(f64::EPSILON),
            rss_per_session_kib: (u.rss_kib as f64 - b.rss_kib as f64) / n.max(1) as f64,
        })
    };
    let errors = errors.snapshot();
    Ok(Report {
        mode: match profile.mode {
            Mode::SelfContained { .. } => "self-contained",
            Mode::External { .. } => "external",
        },
        database: match &profile.mode {
            Mode::SelfContained {
                database_url: None, ..
            } => "sqlite",
            Mode::SelfContained {
                database_url: Some(u),
                ..
            } if u.starts_with("sqlite:") => "sqlite",
            Mode::SelfContained { .. } => "postgres",
            Mode::External { .. } => "unknown",
        },
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        profile: ProfileReport {
            active: profile.active,
            idle: profile.idle,
            direct: profile.direct,
            rate: profile.rate,
            duration_seconds: profile.duration.as_secs_f64(),
            warmup_seconds: profile.warmup.as_secs_f64(),
            settle_seconds: profile.settle.as_secs_f64(),
            idle_output: profile.idle_output,
            users: profile.users,
            start_rate: profile.start_rate,
        },
        open_files: OpenFiles {
            needed: fds_needed(profile),
            limit,
        },
        gateway_adds: report::added(gateway_rtt.as_ref(), direct_rtt.as_ref()),
        gateway: PathReport {
            sent: gw.0,
            echoed: gw.1,
            round_trip: gateway_rtt,
        },
        direct: PathReport {
            sent: dr.0,
            echoed: dr.1,
            round_trip: direct_rtt,
        },
        gateway_starts_per_second: gw_starts,
        direct_starts_per_second: direct_starts,
        gateway_process: process(|s| s.gateway, target.gateway_pid, started),
        emulator_process: process(
            |s| s.emulator,
            target.emulator_pid,
            started + sessions.direct_started,
        ),
        sessions,
        errors_total: errors.values().sum(),
        audit_chain: None,
        errors,
    })
}

/// Signs every user in, [`IN_FLIGHT`] at a time (the gateway refuses password checks beyond
/// its own limit with 429, which is retried).
async fn sign_in(target: &Target, errors: &Errors) -> Result<Vec<SignedIn>, String> {
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = JoinSet::new();
    for (i, (name, password)) in target.users.iter().cloned().enumerate() {
        let gw = target.gateway.clone();
        let gate = gate.clone();
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            (i, gw.sign_in(&name, &password).await)
        });
    }
    let mut signed = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((i, Ok(s))) => signed.push((i, s)),
            Ok((_, Err((kind, detail)))) => errors.add(&kind, &detail),
            Err(e) => errors.add("task", &e.to_string()),
        }
    }
    if signed.is_empty() {
        return Err(format!("no user could sign in: {:?}", errors.snapshot()));
    }
    signed.sort_by_key(|(i, _)| *i);
    Ok(signed.into_iter().map(|(_, s)| s).collect())
}

type Attached = (usize, String, gateway::Socket, u64);

/// Opens the gateway sessions at the start rate; attaches the first `active` ones. Returns
/// the attached sockets, the idle ids and the starts per second.
async fn open_gateway(
    profile: &Profile,
    target: &Target,
    signed: &[SignedIn],
    errors: &Errors,
    until: Instant,
) -> (Vec<Attached>, Vec<(usize, String)>, Option<f64>) {
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tick = rate_ticker(profile.start_rate);
    let mut tasks = JoinSet::new();
    let began = Instant::now();
    let asked = profile.gateway_sessions();
    for i in 0..asked {
        let Some(permit) = next_start(&mut tick, &gate, until).await else {
            not_asked(errors, "gateway", asked - i);
            break;
        };
        let i = i as usize;
        let who = signed[i % signed.len()].clone();
        let node = profile.targets[i % profile.targets.len()].clone();
        let reason = profile.reason.clone();
        let gw = target.gateway.clone();
        let attach = (i as u64) < profile.active;
        let print = profile.idle_output;
        tasks.spawn(async move {
            let opened = gw.open(&who, &node, &reason).await;
            let at = Instant::now();
            drop(permit);
            let id = match opened {
                Ok(id) => id,
                Err(f) => return (i, at, Err(f)),
            };
            if !attach {
                if print > 0
                    && let Err(f) = gateway::print_and_leave(&gw, &who, &id, print).await
                {
                    return (i, at, Err(f));
                }
                return (i, at, Ok((id, None)));
            }
            match gw.attach(&who, &id).await {
                Ok((socket, offset)) => (i, at, Ok((id, Some((socket, offset))))),
                Err(f) => (i, at, Err(f)),
            }
        });
    }
    let mut attached = Vec::new();
    let mut idle = Vec::new();
    let mut last_start = began;
    let mut started = 0u64;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((i, at, Ok((id, socket)))) => {
                started += 1;
                last_start = last_start.max(at);
                match socket {
                    Some((s, offset)) => attached.push((i, id, s, offset)),
                    None => idle.push((i, id)),
                }
            }
            Ok((_, _, Err((kind, detail)))) => errors.add(&kind, &detail),
            Err(e) => errors.add("task", &e.to_string()),
        }
    }
    attached.sort_by_key(|a| a.0);
    let elapsed = last_start.duration_since(began).as_secs_f64();
    let rate = (started > 0).then(|| started as f64 / elapsed.max(f64::EPSILON));
    (attached, idle, rate)
}

type DirectSession = (usize, String, crate::ssm::client::ClientHandle);

async fn open_direct(
    profile: &Profile,
    aws: &crate::ssm::client::AwsClients,
    errors: &Errors,
    until: Instant,
) -> (Vec<DirectSession>, Option<f64>) {
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tick = rate_ticker(profile.start_rate);
    let mut tasks = JoinSet::new();
    let began = Instant::now();
    for i in 0..profile.direct {
        let Some(permit) = next_start(&mut tick, &gate, until).await else {
            not_asked(errors, "direct", profile.direct - i);
            break;
        };
        let i = i as usize;
        let node = profile.targets[i % profile.targets.len()].clone();
        let reason = profile.reason.clone();
        let aws = aws.clone();
        tasks.spawn(async move {
            let opened = direct::open(&aws, &node, &reason).await;
            drop(permit);
            (i, Instant::now(), opened)
        });
    }
    let mut handles = Vec::new();
    let mut last = began;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((i, at, Ok((id, handle)))) => {
                last = last.max(at);
                handles.push((i, id, handle));
            }
            Ok((_, _, Err((kind, detail)))) => errors.add(&kind, &detail),
            Err(e) => errors.add("task", &e.to_string()),
        }
    }
    handles.sort_by_key(|h| h.0);
    let elapsed = last.duration_since(began).as_secs_f64();
    let rate = (!handles.is_empty()).then(|| handles.len() as f64 / elapsed.max(f64::EPSILON));
    (handles, rate)
}

/// The permit for the next start, at the start rate and with fewer than [`IN_FLIGHT`] in
/// flight; `None` once `until` has passed.
async fn next_start(
    tick: &mut tokio::time::Interval,
    gate: &Arc<Semaphore>,
    until: Instant,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    tokio::time::timeout_at(until, async {
        tick.tick().await;
        gate.clone().acquire_owned().await.ok()
    })
    .await
    .ok()
    .flatten()
}

/// Counts the starts the time bound left unasked (one error kind, its count in the detail).
fn not_asked(errors: &Errors, path: &str, left: u64) {
    errors.add(
        "not_asked",
        &format!(
            "{path}: the run's time bound came before {left} more starts were asked (the starts \
             were slower than --start-rate)"
        ),
    );
}

fn rate_ticker(rate: f64) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// (sent, echoed, round trips) of one path.
type PathTotals = (u64, u64, Latencies);

/// Types on every attached and direct session at once, session `i` of each path on the same
/// phase (interleaved); returns the totals of each path and the ids typed on.
async fn type_all(
    profile: &Profile,
    attached: Vec<Attached>,
    direct: Vec<DirectSession>,
    errors: &Errors,
) -> (PathTotals, PathTotals, Vec<(usize, String)>, Vec<String>) {
    // Everyone starts together, a moment from now.
    let start = Instant::now() + Duration::from_millis(200);
    let n = (attached.len().max(direct.len()) as u64).max(1);
    let plan = |i: usize| {
        Plan::nth(
            i as u64,
            n,
            profile.rate,
            start,
            profile.warmup,
            profile.duration,
        )
    };
    let mut gw_tasks = JoinSet::new();
    let mut gw_ids = Vec::new();
    for (i, id, socket, offset) in attached {
        gw_ids.push((i, id));
        gw_tasks.spawn(gateway::type_on(socket, offset, plan(i), errors.clone()));
    }
    let mut dr_tasks = JoinSet::new();
    let mut dr_ids = Vec::new();
    for (i, id, handle) in direct {
        dr_ids.push(id);
        dr_tasks.spawn(direct::type_on(handle, plan(i), errors.clone()));
    }
    let gw = totals(gw_tasks, errors, "gateway").await;
    let dr = totals(dr_tasks, errors, "direct").await;
    (gw, dr, gw_ids, dr_ids)
}

async fn totals(mut tasks: JoinSet<Typing>, errors: &Errors, path: &str) -> PathTotals {
    let mut all = (0, 0, Latencies::default());
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(typing) => {
                let (lat, sent, echoed) = typing.finish(errors, path);
                all.0 += sent;
                all.1 += echoed;
                all.2.merge(lat);
            }
            Err(e) => errors.add("task", &e.to_string()),
        }
    }
    all
}

/// Ends what the run opened on a deployment that outlives it.
async fn end_sessions(
    target: &Target,
    signed: &[SignedIn],
    gateway_ids: Vec<(usize, String)>,
    aws: Option<&crate::ssm::client::AwsClients>,
    direct_ids: Vec<String>,
    errors: &Errors,
) {
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = JoinSet::new();
    for (i, id) in gateway_ids {
        let who = signed[i % signed.len()].clone();
        let gw = target.gateway.clone();
        let gate = gate.clone();
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            gw.end(&who, &id).await
        });
    }
    if let Some(aws) = aws {
        for id in direct_ids {
            let aws = aws.clone();
            let gate = gate.clone();
            tasks.spawn(async move {
                let _permit = gate.acquire_owned().await;
                direct::end(&aws, &id).await
            });
        }
    }
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err((kind, detail))) => errors.add(&kind, &detail),
            Err(e) => errors.add("task", &e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(active: u64, idle: u64, start_rate: f64, compact_after: Option<u64>) -> Profile {
        Profile {
            active,
            idle,
            direct: active,
            rate: 5.0,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            users: 1,
            start_rate,
            targets: super::super::profile::echo_nodes(),
            reason: "r".into(),
            settle: Duration::ZERO,
            idle_output: 0,
            mode: Mode::SelfContained {
                database_url: None,
                keep: false,
                compact_after,
            },
        }
    }

    #[test]
    fn open_files_count_one_per_quiet_session() {
        // 10,000 idle sessions started at 50/s: the 1,500 of the first 30 s still hold their
        // recording open; the rest hold their data channel only. Fits a hard limit of 20,000.
        assert_eq!(fds_needed(&profile(0, 10_000, 50.0, None)), 11_500 + 256);
        assert_eq!(fds_needed(&profile(0, 10_000, 50.0, Some(5))), 10_250 + 256);
        // An active session: data channel, recording and the attach in the gateway.
        assert_eq!(fds_needed(&profile(1_000, 0, 100.0, None)), 3_000 + 256);
    }

    #[tokio::test]
    async fn starts_are_no_longer_asked_once_the_bound_has_passed() {
        let gate = Arc::new(Semaphore::new(1));
        let mut tick = rate_ticker(1_000.0);
        // Every start in flight: the next one waits for a permit until the bound.
        let held = gate.clone().acquire_owned().await.unwrap();
        let until = Instant::now() + Duration::from_millis(50);
        assert!(next_start(&mut tick, &gate, until).await.is_none());
        assert!(Instant::now() >= until);
        drop(held);
        let later = Instant::now() + Duration::from_secs(5);
        assert!(next_start(&mut tick, &gate, later).await.is_some());
    }
}
