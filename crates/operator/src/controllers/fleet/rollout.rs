//! The member arithmetic of a Fleet, as a Deployment does it: scale to `replicas`, roll
//! template changes out within `maxSurge` and `maxUnavailable`, and replace members that
//! stayed failed. Pure: a list of members in, the member writes to make out.
//!
//! - New members take the lowest free ordinals; scaling down removes members that are not
//!   Ready first, then the highest ordinals.
//! - Changes that interrupt nobody (tags, power, mounts) are patched into every member at
//!   once. Changes that interrupt a member (size, disk growth) are patched, and changes an
//!   AzlinVM cannot make (image, location, ...) replace the member — both for as many
//!   members at a time as keep at least `replicas - maxUnavailable` members Ready, with up
//!   to `maxSurge` extra members created first.

use std::collections::BTreeSet;

use super::members::{Drift, free_ordinals};

/// One member as the arithmetic sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberState {
    /// Its ordinal.
    pub ordinal: u32,
    /// Its name.
    pub name: String,
    /// Being deleted.
    pub deleting: bool,
    /// Ready for its current generation.
    pub ready: bool,
    /// Failed for longer than the healing threshold.
    pub heal: bool,
    /// Created only to keep capacity while other members are patched (see [`plan`]).
    pub stand_in: bool,
    /// How it differs from the template.
    pub drift: Drift,
}

/// Limits of a rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Wanted members.
    pub replicas: usize,
    /// Extra members allowed during a rollout.
    pub max_surge: usize,
    /// Members allowed to be unavailable during a rollout.
    pub max_unavailable: usize,
}

/// The member writes to make now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Actions {
    /// Ordinals of members to create.
    pub create: Vec<u32>,
    /// Whether the members to create are stand-ins: extra capacity while members are
    /// patched in a way that interrupts them, removed again once they are all back.
    pub stand_in: bool,
    /// Names of members to patch to the current template.
    pub patch: Vec<String>,
    /// Names of members to delete.
    pub delete: Vec<String>,
    /// Names of the members among `delete` that are replaced because they stayed failed.
    pub healed: Vec<String>,
}

impl Actions {
    /// Whether nothing is to be written.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.patch.is_empty() && self.delete.is_empty()
    }
}

/// Resolves `maxSurge`/`maxUnavailable` against `replicas` as Deployments do: percentages of
/// surge round up, of unavailability down; when both come out 0, one may be unavailable.
pub fn limits(replicas: usize, surge: &str, unavailable: &str) -> Limits {
    let resolve = |v: &str, up: bool| -> usize {
        match v.strip_suffix('%') {
            Some(p) => {
                let p: usize = p.trim().parse().unwrap_or(0);
                let scaled = replicas * p;
                if up {
                    scaled.div_ceil(100)
                } else {
                    scaled / 100
                }
            }
            None => v.trim().parse().unwrap_or(0),
        }
    };
    let max_surge = resolve(surge, true);
    let mut max_unavailable = resolve(unavailable, false).min(replicas);
    if max_surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }
    Limits {
        replicas,
        max_surge,
        max_unavailable,
    }
}

/// Order of removal: stand-ins first, then members that are not Ready, then the highest
/// ordinal.
fn removal_order(a: &&MemberState, b: &&MemberState) -> std::cmp::Ordering {
    b.stand_in
        .cmp(&a.stand_in)
        .then(a.ready.cmp(&b.ready))
        .then(b.ordinal.cmp(&a.ordinal))
}

/// The writes that bring `members` towards `limits.replicas` current, Ready members; new
/// members avoid the ordinals of `members` and `reserved`.
pub fn plan(members: &[MemberState], reserved: &BTreeSet<u32>, limits: Limits) -> Actions {
    let mut out = Actions::default();
    let mut taken: BTreeSet<u32> = members.iter().map(|m| m.ordinal).collect();
    taken.extend(reserved);
    let mut live: Vec<&MemberState> = members.iter().filter(|m| !m.deleting).collect();
    // Members failed for too long go first; they count as unavailable already.
    for m in live.iter().filter(|m| m.heal) {
        out.delete.push(m.name.clone());
        out.healed.push(m.name.clone());
    }
    live.retain(|m| !m.heal);
    // Non-interrupting changes reach every member at once.
    for m in live.iter().filter(|m| m.drift == Drift::Patch) {
        out.patch.push(m.name.clone());
    }
    let is_new = |m: &&MemberState| matches!(m.drift, Drift::Current | Drift::Patch);
    let mut new: Vec<&MemberState> = live.iter().copied().filter(is_new).collect();
    let mut old: Vec<&MemberState> = live.iter().copied().filter(|m| !is_new(m)).collect();
    let total = live.len();
    let r = limits.replicas;
    let min_ready = r.saturating_sub(limits.max_unavailable);
    let ready = live.iter().filter(|m| m.ready).count();
    let mut budget = ready.saturating_sub(min_ready);
    // Too many up-to-date members: remove the extra ones, a Ready one only while enough
    // others are Ready (a stand-in stays until the members it covered for are back).
    if new.len() > r {
        old.sort_by(removal_order);
        out.delete.extend(old.iter().map(|m| m.name.clone()));
        new.sort_by(removal_order);
        for m in new.iter().take(new.len() - r) {
            if m.ready {
                if budget == 0 {
                    break;
                }
                budget -= 1;
            }
            out.delete.push(m.name.clone());
        }
        return out;
    }
    // Create up-to-date members, within the surge while old ones remain.
    let ceiling = if old.is_empty() {
        r
    } else {
        r + limits.max_surge
    };
    let room = ceiling.saturating_sub(total);
    let wanted = (r - new.len()).min(room);
    out.create = free_ordinals(&taken, wanted);
    // Members made while the old ones are only patched stand in for them meanwhile.
    out.stand_in = !old.is_empty() && old.iter().all(|m| m.drift == Drift::Disruptive);
    // Move old members over (patch or replace), keeping enough Ready.
    old.sort_by(removal_order);
    for m in old {
        // An old member that is not Ready costs no availability.
        if m.ready {
            if budget == 0 {
                continue;
            }
            budget -= 1;
        }
        match m.drift {
            Drift::Disruptive => out.patch.push(m.name.clone()),
            _ => out.delete.push(m.name.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(members: &[MemberState], l: Limits) -> Actions {
        plan(members, &BTreeSet::new(), l)
    }

    fn m(ordinal: u32, ready: bool, drift: Drift) -> MemberState {
        MemberState {
            ordinal,
            name: format!("f-{ordinal:03}"),
            deleting: false,
            ready,
            heal: false,
            stand_in: false,
            drift,
        }
    }

    fn names(v: &[u32]) -> Vec<String> {
        v.iter().map(|n| format!("f-{n:03}")).collect()
    }

    #[test]
    fn limits_round_like_deployments() {
        assert_eq!(
            limits(10, "25%", "25%"),
            Limits {
                replicas: 10,
                max_surge: 3,
                max_unavailable: 2
            }
        );
        assert_eq!(
            limits(3, "1", "0"),
            Limits {
                replicas: 3,
                max_surge: 1,
                max_unavailable: 0
            }
        );
        assert_eq!(limits(3, "0", "0%").max_unavailable, 1, "never stuck");
        assert_eq!(limits(2, "0", "5").max_unavailable, 2);
    }

    #[test]
    fn scale_up_and_down() {
        let l = limits(5, "1", "0");
        let up = run(
            &[m(1, true, Drift::Current), m(3, false, Drift::Current)],
            l,
        );
        assert_eq!(up.create, vec![2, 4, 5]);
        assert!(up.delete.is_empty());
        let l = limits(2, "1", "0");
        let down = run(
            &[
                m(1, true, Drift::Current),
                m(2, true, Drift::Current),
                m(3, false, Drift::Current),
                m(4, true, Drift::Current),
            ],
            l,
        );
        assert_eq!(
            down.delete,
            names(&[3, 4]),
            "not Ready first, then the highest"
        );
        assert!(down.create.is_empty());
    }

    #[test]
    fn rolling_replacement_surges_then_removes_one_old_per_ready_new() {
        let l = limits(3, "1", "0");
        let old = |n| m(n, true, Drift::Replace);
        // Step 1: one surge member, nobody removed (all 3 are needed Ready).
        let a = run(&[old(1), old(2), old(3)], l);
        assert_eq!(a.create, vec![4]);
        assert!(a.delete.is_empty());
        // Step 2: the surge member is not Ready yet: wait.
        let a = run(&[old(1), old(2), old(3), m(4, false, Drift::Current)], l);
        assert!(a.is_empty(), "{a:?}");
        // Step 3: it is Ready: one old member goes.
        let a = run(&[old(1), old(2), old(3), m(4, true, Drift::Current)], l);
        assert_eq!(a.delete, names(&[3]));
        assert!(a.create.is_empty());
        // Step 4: the old one is terminating: create the next new one.
        let mut terminating = old(3);
        terminating.deleting = true;
        let a = run(
            &[old(1), old(2), terminating, m(4, true, Drift::Current)],
            l,
        );
        assert_eq!(a.create, vec![5]);
    }

    #[test]
    fn interrupting_patches_respect_unavailability_and_plain_patches_do_not_wait() {
        let l = limits(3, "0", "1");
        let d = |n| m(n, true, Drift::Disruptive);
        let a = run(&[d(1), d(2), d(3)], l);
        assert_eq!(a.patch, names(&[3]), "one at a time");
        let p = |n| m(n, true, Drift::Patch);
        let a = run(&[p(1), p(2), p(3)], l);
        assert_eq!(a.patch, names(&[1, 2, 3]));
    }

    #[test]
    fn a_stand_in_covers_interrupting_patches_and_goes_when_they_are_done() {
        let l = limits(2, "1", "0");
        let d = |n| m(n, true, Drift::Disruptive);
        let a = run(&[d(1), d(2)], l);
        assert_eq!(a.create, vec![3]);
        assert!(a.stand_in);
        let mut s = m(3, true, Drift::Current);
        s.stand_in = true;
        // The stand-in is Ready: one member is patched.
        let a = run(&[d(1), d(2), s.clone()], l);
        assert_eq!(a.patch, names(&[2]));
        // The last one is being patched (not Ready): the stand-in stays.
        let a = run(
            &[
                m(1, true, Drift::Current),
                m(2, false, Drift::Current),
                s.clone(),
            ],
            l,
        );
        assert!(a.is_empty(), "{a:?}");
        // All back: the stand-in goes, not a patched member.
        let a = run(
            &[m(1, true, Drift::Current), m(2, true, Drift::Current), s],
            l,
        );
        assert_eq!(a.delete, names(&[3]));
    }

    #[test]
    fn names_of_former_members_stay_taken() {
        let a = plan(&[], &BTreeSet::from([1]), limits(2, "1", "0"));
        assert_eq!(a.create, vec![2, 3]);
    }

    #[test]
    fn failed_members_are_replaced() {
        let l = limits(2, "1", "0");
        let mut failed = m(2, false, Drift::Current);
        failed.heal = true;
        let a = run(&[m(1, true, Drift::Current), failed], l);
        assert_eq!(a.healed, names(&[2]));
        assert_eq!(a.delete, names(&[2]));
        assert_eq!(a.create, vec![3], "the replacement takes a free ordinal");
    }

    #[test]
    fn scale_to_zero_removes_everyone() {
        let a = run(
            &[m(1, true, Drift::Current), m(2, true, Drift::Replace)],
            limits(0, "1", "0"),
        );
        let mut deleted = a.delete;
        deleted.sort();
        assert_eq!(deleted, names(&[1, 2]));
    }
}
