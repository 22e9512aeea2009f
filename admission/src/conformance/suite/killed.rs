//! `execute.killed`: an execute killed at any instant is finished by the next one.
//!
//! It runs on the first example of each operation, and on the first destructive and the first
//! non-destructive example when those are not among them. With the workspace reset to the
//! example's base, a fresh process executes the plan uninterrupted, which measures how long an
//! execute takes. Then, [`KILLS`] times, again from the base: a fresh process (asked `describe`
//! first, so it has started and finished any recovery of its own) is sent `execute` and killed,
//! with its whole process group, at an instant of that span: right after sending, just before
//! the answer would come, and at seeded random instants between. A second fresh process then
//! executes the same plan with the same params (for a destructive plan the same force-ack: one
//! killed before its point of no return must not have spent it, one killed after must be
//! finished without it). That execute must succeed with a result recorded with this round's
//! admission, leave the workspace as the uninterrupted execute left it, `status` must say
//! succeeded with that result, and one more execute must return the same result and witness.
//!
//! The reference is the workspace the suite's own execute left (`execute.applies`). Paths whose
//! content differs between it and the second uninterrupted execute, started in another second
//! of the wall clock (a timestamp in a log such as git's reflog, a stat cache), are compared by
//! shape only: there, and of the same kind and mode. Every round is admitted by an admission
//! of its own, so a result recorded by an earlier round is never mistaken for this one's. What
//! a killed process wrote is not judged (the kill may cut a message short); the processes that
//! finish its work count for `process.exit` and `stdout.protocol-only` like any other.

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use protocol::artifact::kinds::Plan;
use protocol::framing::Framing;
use protocol::verbs::{self, PlanState};
use protocol::Digest;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::{check_executed, tail, unchanged, Check, ExampleRun, Executed};
use crate::conformance::peer::Peer;
use crate::conformance::world::{Saved, Snapshot};

/// How many executes of one example are killed.
const KILLS: usize = 4;

/// The last kill instant, as a fraction of an uninterrupted execute: just before its answer.
const JUST_BEFORE: f64 = 0.97;

/// Which examples are checked, and the seeded generator of kill instants.
pub(super) struct Kills {
    seed: u64,
    /// SplitMix64's state: the same seed gives the same instants, in the same order.
    state: u64,
    operations: BTreeSet<String>,
    destructive_done: bool,
    plain_done: bool,
}

impl Kills {
    /// No example checked yet; instants drawn from `seed`.
    pub(super) fn new(seed: u64) -> Self {
        Self {
            seed,
            state: seed,
            operations: BTreeSet::new(),
            destructive_done: false,
            plain_done: false,
        }
    }

    /// Whether to check an example of `operation` whose plan is `destructive` or not: the
    /// first of each operation, and the first of each kind of plan. Counts it as checked.
    pub(super) fn wanted(&mut self, operation: &str, destructive: bool) -> bool {
        let kind_done = if destructive {
            &mut self.destructive_done
        } else {
            &mut self.plain_done
        };
        let wanted = !self.operations.contains(operation) || !*kind_done;
        if wanted {
            *kind_done = true;
            self.operations.insert(operation.to_owned());
        }
        wanted
    }

    /// The next example's kill instants, as fractions of an uninterrupted execute: right
    /// after sending, one drawn from each of `KILLS - 2` equal strata between, and just before
    /// the answer.
    fn fractions(&mut self) -> [f64; KILLS] {
        let strata = (KILLS - 2) as f64;
        let mut fractions = [0.0; KILLS];
        for (i, fraction) in fractions.iter_mut().enumerate().skip(1).take(KILLS - 2) {
            *fraction = JUST_BEFORE * ((i - 1) as f64 + self.next_unit()) / strata;
        }
        fractions[KILLS - 1] = JUST_BEFORE;
        fractions
    }

    /// A number in [0, 1) from SplitMix64 (Steele, Lea and Flood, 2014).
    fn next_unit(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What the check learnt from the uninterrupted execute, for the killed ones.
struct Reference<'a> {
    plan_hash: &'a Digest,
    plan: &'a Plan,
    base: &'a Saved,
    applied: &'a Snapshot,
    /// Paths whose content two uninterrupted executes leave different anyway.
    content_free: BTreeSet<std::path::PathBuf>,
}

impl ExampleRun<'_, '_> {
    /// The check; the workspace is put back as the suite's execute left it (`applied`).
    pub(super) fn killed(
        &mut self,
        plan_hash: &Digest,
        plan: &Plan,
        base: &Saved,
        applied: &Snapshot,
    ) {
        let world = self.suite.world;
        let after = match world.save() {
            Ok(saved) => saved,
            Err(e) => return self.record("execute.killed", Err(e)),
        };
        let seed = self.suite.kills.seed;
        let fractions = self.suite.kills.fractions();
        let check = self
            .kill_rounds(plan_hash, plan, base, applied, &fractions)
            .map(|detail| format!("seed {seed}: {detail}"))
            .map_err(|e| format!("seed {seed} (--kill-seed {seed} replays it): {e}"));
        let put_back = world.restore(&after);
        self.record("execute.killed", check.and_then(|ok| put_back.map(|()| ok)));
    }

    fn kill_rounds(
        &mut self,
        plan_hash: &Digest,
        plan: &Plan,
        base: &Saved,
        applied: &Snapshot,
        fractions: &[f64; KILLS],
    ) -> Check {
        let world = self.suite.world;
        world.restore(base)?;
        let (params, admission) = self.round(plan_hash, plan, "uninterrupted")?;
        // In another second than the suite's execute, so that a timestamp it writes (a
        // reflog's are in whole seconds) differs from the reference's and is seen to.
        thread::sleep(until_next_second());
        let mut peer = self.fresh()?;
        let started = Instant::now();
        let reply = peer.call(verbs::EXECUTE, params);
        let took = started.elapsed();
        let result = reply
            .map_err(|no| format!("{no}{}", tail(&peer.stderr_tail())))
            .and_then(|r| r.map_err(|e| format!("failed: {}", e.describe())))
            .and_then(|result| {
                check_executed(
                    world,
                    &result,
                    plan_hash,
                    plan,
                    &admission,
                    plan.destructive,
                )
            });
        if let Err(e) = result {
            return Err(format!(
                "an uninterrupted execute in a fresh process, from the plan's base: {e}"
            ));
        }
        self.suite
            .end(&format!("{} uninterrupted", self.subject), peer);
        let again = world.snapshot()?;
        let content_free = applied.changed_content(&again);
        if let Some(difference) = applied.first_difference_except(&again, &content_free) {
            return Err(format!(
                "two uninterrupted executes of the plan, each from its base, left different workspaces: {difference}"
            ));
        }
        let reference = Reference {
            plan_hash,
            plan,
            base,
            applied,
            content_free,
        };
        let mut instants = Vec::new();
        let mut answered = 0;
        for (n, fraction) in fractions.iter().enumerate() {
            let at = took.mul_f64(*fraction);
            let killed_after_answer = self.kill_round(&reference, n + 1, at).map_err(|e| {
                format!(
                    "killed {} after execute was sent (an uninterrupted one took {}): {e}",
                    ms(at),
                    ms(took)
                )
            })?;
            answered += usize::from(killed_after_answer);
            instants.push(ms(at));
        }
        let shape_only = match reference.content_free.len() {
            0 => String::new(),
            n => format!(
                "; {n} path(s) two uninterrupted executes leave different anyway are compared by kind and mode only: {}",
                reference
                    .content_free
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        Ok(format!(
            "an uninterrupted execute in a fresh process took {}; killed {} after sending it ({answered} of {KILLS} had answered): each time the next execute in a fresh process succeeded, left the workspace as an uninterrupted one, recorded its result (status succeeded) and returned it again{shape_only}",
            ms(took),
            instants.join(", "),
        ))
    }

    /// One killed execute and the one that must finish it; whether the killed one had
    /// answered before the kill.
    fn kill_round(
        &mut self,
        reference: &Reference,
        n: usize,
        at: Duration,
    ) -> Result<bool, String> {
        let world = self.suite.world;
        let (plan_hash, plan) = (reference.plan_hash, reference.plan);
        world.restore(reference.base)?;
        let (params, admission) = self.round(plan_hash, plan, &format!("kill {n}"))?;
        let mut victim = self.fresh()?;
        let id = victim
            .send(verbs::EXECUTE, params.clone())
            .map_err(|e| format!("sending execute: {e}"))?;
        thread::sleep(at);
        let answered = victim
            .kill()
            .iter()
            .any(|response| response.get("id") == Some(&id));

        let mut next = self.fresh()?;
        let executed = match next.call(verbs::EXECUTE, params.clone()) {
            Ok(Ok(result)) => check_executed(
                world,
                &result,
                plan_hash,
                plan,
                &admission,
                plan.destructive,
            ),
            Ok(Err(e)) => Err(format!("failed: {}", e.describe())),
            Err(no) => Err(format!("{no}{}", tail(&next.stderr_tail()))),
        }
        .map_err(|e| format!("the next execute of the plan, in a fresh process: {e}"))?;
        let now = world.snapshot()?;
        if let Some(difference) = reference
            .applied
            .first_difference_except(&now, &reference.content_free)
        {
            return Err(format!(
                "after the next execute, the workspace is not as an uninterrupted execute leaves it: {difference}"
            ));
        }
        recorded(&mut next, plan_hash, &executed)?;
        let again = next
            .call(verbs::EXECUTE, params)
            .map_err(|no| no.to_string())?
            .map_err(|e| format!("executing once more failed: {}", e.describe()))?;
        if again["result_hash"] != json!(executed.result_hash)
            || again["witness_hash"] != json!(executed.witness_hash)
        {
            return Err(format!(
                "executing once more gave result {} and witness {}, not the recorded {} and {}",
                again["result_hash"],
                again["witness_hash"],
                executed.result_hash,
                executed.witness_hash
            ));
        }
        unchanged(world, &now).map_err(|e| format!("executing once more: {e}"))?;
        self.suite
            .end(&format!("{} after kill {n}", self.subject), next);
        Ok(answered)
    }

    /// The params of one round: an admission of its own and, for a destructive plan, a fresh
    /// force-ack; and that admission.
    fn round(
        &self,
        plan_hash: &Digest,
        plan: &Plan,
        round: &str,
    ) -> Result<(Value, Digest), String> {
        let world = self.suite.world;
        let admission = world.admission_for_round(
            *plan_hash,
            plan.mechanism.clone(),
            plan.destructive,
            &format!("execute.killed [{}], {round}", self.subject),
        )?;
        let mut params = json!({"plan_hash": plan_hash, "admission": admission});
        if plan.destructive {
            params["force_ack"] = world.force_ack(
                plan_hash,
                &admission,
                OffsetDateTime::now_utc() + time::Duration::minutes(10),
                true,
            )?;
        }
        Ok((params, admission))
    }

    /// A fresh process of the mechanism, killable with its group, that has answered describe.
    fn fresh(&self) -> Result<Peer, String> {
        let mut peer = Peer::spawn_killable(self.suite.launch, Framing::Lines, self.suite.timeout)
            .map_err(|e| format!("starting a fresh process: {e}"))?;
        match peer.call(verbs::DESCRIBE, json!({})) {
            Ok(Ok(_)) => Ok(peer),
            Ok(Err(e)) => Err(format!("a fresh process failed describe: {}", e.describe())),
            Err(no) => Err(format!(
                "a fresh process, asked describe: {no}{}",
                tail(&peer.stderr_tail())
            )),
        }
    }
}

/// Requires `status` to say succeeded, with the result `executed` returned.
fn recorded(peer: &mut Peer, plan_hash: &Digest, executed: &Executed) -> Result<(), String> {
    let status = peer
        .call(verbs::STATUS, json!({"plan_hash": plan_hash}))
        .map_err(|no| format!("status: {no}"))?
        .map_err(|e| format!("status: {}", e.describe()))?;
    if status["state"] != json!(PlanState::Succeeded) {
        return Err(format!("status is {}, not succeeded", status["state"]));
    }
    if status["result_hash"] != json!(executed.result_hash) {
        return Err(format!(
            "status names result {}, the execute returned {}",
            status["result_hash"], executed.result_hash
        ));
    }
    Ok(())
}

/// How long until the wall clock's next whole second.
fn until_next_second() -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Duration::from_secs(1).saturating_sub(Duration::from_nanos(u64::from(now.subsec_nanos())))
}

/// A duration in milliseconds, for a report.
fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_instants_spread_from_sending_to_just_before_the_answer() {
        let (mut a, mut b) = (Kills::new(7), Kills::new(7));
        let first = a.fractions();
        assert_eq!(first, b.fractions());
        assert_eq!(first[0], 0.0);
        assert_eq!(first[KILLS - 1], JUST_BEFORE);
        assert!(first.windows(2).all(|w| w[0] <= w[1]), "{first:?}");
        assert_ne!(
            a.fractions(),
            first,
            "each example gets instants of its own"
        );
        assert_ne!(Kills::new(8).fractions(), first);
    }

    #[test]
    fn each_operation_and_each_kind_of_plan_is_checked_once() {
        let mut kills = Kills::new(0);
        assert!(kills.wanted("write", false));
        assert!(!kills.wanted("write", false));
        assert!(kills.wanted("write", true), "the first destructive plan");
        assert!(!kills.wanted("write", true));
        assert!(
            kills.wanted("delete", true),
            "the first of another operation"
        );
    }
}
