//! Property (proptest, model-based, root): whatever sequence of control-socket requests
//! (add, remove) and expiries runs against the enforcer, the control protocol's `list` names
//! exactly the entries in the kernel's deny tables (read back from the BPF maps), and both
//! equal a plain model of what the requests asked for.
//!
//! The requests go through `control::handle_line`, the socket's own request handler, in front
//! of the real `Enforcer` and a real `Capture` (one, loaded once: loading is the slow part).
//! The targets cannot touch anything: program names and paths nobody runs, and destinations
//! in the documentation ranges (192.0.2.0/24, 2001:db8::/32).
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use proptest::{prelude::*, test_runner::Config as ProptestConfig};
use secmon::{
    capture::{Capture, CaptureOptions, enforce::DenyTarget},
    response::{
        control::{Reply, TargetSpec, handle_line},
        enforce::{EnforcePolicy, Enforcer, Origin, SharedCapture, lock_capture},
        simulate::Allowlist,
    },
};

use crate::common::require_root;

/// What the operations deny: (request target, kind in the list).
fn targets() -> Vec<(TargetSpec, &'static str)> {
    let tag = std::process::id() % 100_000;
    vec![
        (
            TargetSpec::Exec(format!("/nonexistent/secmon-prop-{tag}/a")),
            "exec_path",
        ),
        (
            TargetSpec::Exec(format!("/nonexistent/secmon-prop-{tag}/b")),
            "exec_path",
        ),
        (TargetSpec::Exec(format!("spa{tag}")), "exec_name"),
        (TargetSpec::Exec(format!("spb{tag}")), "exec_name"),
        (TargetSpec::Connect("192.0.2.1".to_string()), "connect"),
        (TargetSpec::Connect("192.0.2.1:8080".to_string()), "connect"),
        (
            TargetSpec::Connect("[2001:db8::1]:443".to_string()),
            "connect",
        ),
    ]
}

#[derive(Clone, Debug)]
enum Op {
    /// `add` for target i, with `ttl_secs` absent, 0 (never) or an hour.
    Add(usize, Option<u64>),
    /// `remove` of the i-th live entry (an unknown id when there is none).
    Remove(usize),
    /// `remove` of an id that was never given.
    RemoveUnknown,
    /// A deny of target i that lapses at once (as a TTL running out would).
    Expire(usize),
}

fn op(n: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..n, prop_oneof![Just(None), Just(Some(0u64)), Just(Some(3600))])
            .prop_map(|(i, ttl)| Op::Add(i, ttl)),
        2 => (0usize..8).prop_map(Op::Remove),
        1 => Just(Op::RemoveUnknown),
        1 => (0..n).prop_map(Op::Expire),
    ]
}

/// The live entries as (id, kind), sorted: from a `list` reply.
fn listed(enforcer: &Enforcer) -> Vec<(u32, String)> {
    let reply = handle_line(enforcer, r#"{"op":"list"}"#, "proptest");
    assert!(reply.ok, "list fails: {reply:?}");
    let mut ids: Vec<(u32, String)> = reply
        .denies
        .unwrap_or_default()
        .into_iter()
        .map(|d| (d.id, d.kind))
        .collect();
    ids.sort();
    ids
}

fn kernel(capture: &SharedCapture) -> Vec<(u32, String)> {
    let ids = lock_capture(capture)
        .kernel_deny_ids()
        .expect("reading the deny maps");
    ids.into_iter().map(|(id, k)| (id, k.to_string())).collect()
}

fn request(enforcer: &Enforcer, line: String) -> Reply {
    handle_line(enforcer, &line, "proptest")
}

/// Runs `ops` from empty tables, checking after each that list == kernel == model. Leaves
/// no entry behind.
fn check_sequence(
    capture: &SharedCapture,
    enforcer: &Enforcer,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let targets = targets();
    // Each case starts from empty tables, so a failure cannot leak into the shrinking.
    remove_all(enforcer)?;
    prop_assert_eq!(
        kernel(capture),
        Vec::new(),
        "entries the list does not know"
    );
    // Model: target index → id of its live entry.
    let mut model: BTreeMap<usize, u32> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Add(i, ttl) => {
                let body =
                    serde_json::json!({"op": "add", "target": targets[*i].0, "ttl_secs": ttl});
                let reply = request(enforcer, body.to_string());
                prop_assert!(reply.ok, "{op:?} refused: {reply:?}");
                let id = reply.deny.map(|d| d.id).unwrap_or_default();
                model.insert(*i, id);
            }
            Op::Remove(n) => {
                let live: Vec<(usize, u32)> = model.iter().map(|(&t, &id)| (t, id)).collect();
                let reply;
                if let Some(&(target, id)) = live.get(n % live.len().max(1)) {
                    reply = request(enforcer, format!(r#"{{"op":"remove","id":{id}}}"#));
                    prop_assert!(reply.ok, "{op:?} of #{id} refused: {reply:?}");
                    model.remove(&target);
                } else {
                    reply = request(enforcer, r#"{"op":"remove","id":4000000000}"#.to_string());
                    prop_assert!(!reply.ok, "removing from an empty table: {reply:?}");
                }
            }
            Op::RemoveUnknown => {
                let reply = request(enforcer, r#"{"op":"remove","id":4000000001}"#.to_string());
                prop_assert!(!reply.ok, "an unknown id is refused: {reply:?}");
            }
            Op::Expire(i) => {
                let target = targets[*i].0.resolve().map_err(TestCaseError::fail)?;
                let origin = Origin {
                    by: "proptest".to_string(),
                    rule: None,
                    reason: "expires at once".to_string(),
                };
                let blocked = enforcer.block(target, Some(Duration::from_nanos(1)), origin);
                prop_assert!(blocked.is_ok(), "{op:?}: {blocked:?}");
                // It replaced any entry for the target, and has already lapsed.
                model.remove(i);
            }
        }
        let list = listed(enforcer);
        let in_kernel = kernel(capture);
        prop_assert_eq!(&list, &in_kernel, "after {:?}: list vs kernel", op);
        let mut expected: Vec<(u32, String)> = model
            .iter()
            .map(|(&t, &id)| (id, targets[t].1.to_string()))
            .collect();
        expected.sort();
        prop_assert_eq!(&list, &expected, "after {:?}: list vs model", op);
    }
    remove_all(enforcer)?;
    prop_assert!(kernel(capture).is_empty(), "entries left in the kernel");
    Ok(())
}

fn remove_all(enforcer: &Enforcer) -> Result<(), TestCaseError> {
    for (id, _) in listed(enforcer) {
        let reply = request(enforcer, format!(r#"{{"op":"remove","id":{id}}}"#));
        prop_assert!(reply.ok, "cleaning up #{id}: {reply:?}");
    }
    Ok(())
}

#[test]
fn control_list_always_equals_the_kernel_tables() {
    require_root();
    let (mut capture, _ring) = Capture::start(&CaptureOptions::default()).expect("capture starts");
    capture.enable_enforcement().expect("enforcement on");
    let capture: SharedCapture = Arc::new(Mutex::new(capture));
    // No default TTL: entries added without one last until removed, as the model expects.
    let policy = EnforcePolicy {
        default_ttl: None,
        ..EnforcePolicy::default()
    };
    let enforcer = Enforcer::new(capture.clone(), Allowlist::new(&[]), policy, None);
    let n = targets().len();
    let config = ProptestConfig {
        cases: 48,
        // A failure is shrunk and printed; no regression file next to the test sources.
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest::test_runner::TestRunner::new(config)
        .run(&proptest::collection::vec(op(n), 1..40), |ops| {
            check_sequence(&capture, &enforcer, &ops)
        })
        .unwrap_or_else(|e| panic!("{e}"));
    // The DenyTarget spelling the model relies on.
    assert_eq!(
        TargetSpec::Connect("192.0.2.1".into()).resolve(),
        Ok(DenyTarget::Connect("192.0.2.1".parse().expect("ip"), 0))
    );
}
