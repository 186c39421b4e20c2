//! Groups move on events and exact timers, not on a periodic poll: the moment the last member
//! leaves, the group is Empty and can be deleted; a static member that goes silent is expired
//! at its `session.timeout.ms`, not at the next sweep after it. Hand-built frames.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::raw::Raw;
use common::{Broker, BrokerOptions};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tidelog::error::ErrorCode;

const OK: i16 = 0;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn broker() -> Broker {
    Broker::start_with(
        BrokerOptions::default()
            .shards(2)
            .set("group.initial.rebalance.delay.ms", "0")
            .set("group.min.session.timeout.ms", "1000"),
    )
}

fn join_req(
    group: &str,
    member: &str,
    instance: Option<&str>,
    session_ms: i32,
) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(session_ms)
        .with_rebalance_timeout_ms(30_000)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"meta"))])
}

fn sync_req(group: &str, generation: i32, member: &str, assign: &[String]) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_assignments(
            assign
                .iter()
                .map(|m| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(m))
                        .with_assignment(Bytes::from(format!("for {m}")))
                })
                .collect(),
        )
}

/// (state, member count) as DescribeGroups reports them.
fn describe(c: &mut Raw, group: &str) -> (String, usize) {
    let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
    let g = &c.call(&req, 5).groups[0];
    (g.group_state.to_string(), g.members.len())
}

fn delete(c: &mut Raw, group: &str) -> i16 {
    let req = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(group))]);
    c.call(&req, 2).results[0].error_code
}

/// Brings `conns.len()` dynamic members into one Stable generation; returns their ids.
fn stable_group(broker: &Broker, conns: &mut [Raw], group: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for c in conns.iter_mut() {
        let required = c.call(&join_req(group, "", None, 10_000), 9);
        assert_eq!(required.error_code, ErrorCode::MemberIdRequired.code());
        ids.push(required.member_id.to_string());
    }
    // The first member forms generation 1 alone (no initial delay).
    let first = conns[0].call(&join_req(group, &ids[0], None, 10_000), 9);
    assert_eq!(first.error_code, OK);
    for (c, id) in conns.iter_mut().zip(&ids).skip(1) {
        c.send(&join_req(group, id, None, 10_000), 9);
    }
    // Wait (by observing the group, not by sleeping) until the newcomers are all registered,
    // so that the leader's rejoin is the event that completes the join phase for all four.
    let mut observer = Raw::connect(&broker.addr());
    let deadline = Instant::now() + Duration::from_secs(20);
    while describe(&mut observer, group) != ("PreparingRebalance".to_string(), conns.len()) {
        assert!(Instant::now() < deadline, "joins not registered");
    }
    conns[0].send(&join_req(group, &ids[0], None, 10_000), 9);
    let joined: Vec<JoinGroupResponse> = conns
        .iter_mut()
        .map(|c| c.receive::<JoinGroupRequest>(9))
        .collect();
    let generation = joined[0].generation_id;
    for j in &joined {
        assert_eq!((j.error_code, j.generation_id), (OK, generation));
    }
    let leader = joined[0].leader.to_string();
    for (c, id) in conns.iter_mut().zip(&ids) {
        let assign = if *id == leader {
            ids.clone()
        } else {
            Vec::new()
        };
        c.send(&sync_req(group, generation, id, &assign), 5);
    }
    for c in conns.iter_mut() {
        assert_eq!(c.receive::<SyncGroupRequest>(5).error_code, OK);
    }
    assert_eq!(describe(&mut observer, group), ("Stable".to_string(), 4));
    ids
}

#[test]
fn four_members_leaving_together_leave_an_empty_group_that_deletes_at_once() {
    let broker = broker();
    let mut admin = Raw::connect(&broker.addr());
    for round in 0..5 {
        let mut conns: Vec<Raw> = (0..4).map(|_| Raw::connect(&broker.addr())).collect();
        let ids = stable_group(&broker, &mut conns, "leavers");
        // All four LeaveGroups go out before any answer is read.
        for (c, id) in conns.iter_mut().zip(&ids) {
            let leave = LeaveGroupRequest::default()
                .with_group_id(GroupId(s("leavers")))
                .with_members(vec![MemberIdentity::default().with_member_id(s(id))]);
            c.send(&leave, 5);
        }
        for c in conns.iter_mut() {
            let left = c.receive::<LeaveGroupRequest>(5);
            assert_eq!((left.error_code, left.members[0].error_code), (OK, OK));
        }
        // No retry loop: the first look must already see the outcome.
        assert_eq!(
            describe(&mut admin, "leavers"),
            ("Empty".to_string(), 0),
            "round {round}"
        );
        assert_eq!(delete(&mut admin, "leavers"), OK, "round {round}");
        assert_eq!(describe(&mut admin, "leavers").0, "Dead");
    }
}

/// Session timeout of the silent static members below.
const SESSION_MS: u64 = 1500;
/// How late after its session timeout a member may still be listed. An exact timer is late
/// only by scheduling on a loaded test machine, for which 120 ms is generous. The old 200 ms
/// sweep was late by anything up to 200 ms, depending on where the deadline fell between two
/// sweeps. The four members below go silent 50 ms apart, so their deadlines cover the sweep
/// period evenly and at least one falls 150 ms or more before the next sweep: a sweeping
/// broker cannot pass by luck.
const LATE_MS_MAX: u64 = 120;
const STAGGER_MS: u64 = 50;

#[test]
fn silent_static_members_expire_at_their_session_timeout_not_at_the_next_sweep() {
    let broker = broker();
    let mut admin = Raw::connect(&broker.addr());
    let session = Duration::from_millis(SESSION_MS);
    // (group, connection kept open but silent, when the broker last heard from the member)
    let mut silent = Vec::new();
    for i in 0..4 {
        let group = format!("silent-{i}");
        let mut c = Raw::connect(&broker.addr());
        let joined = c.call(&join_req(&group, "", Some("i"), SESSION_MS as i32), 9);
        assert_eq!(joined.error_code, OK);
        let id = joined.member_id.to_string();
        let sync = sync_req(&group, joined.generation_id, &id, std::slice::from_ref(&id))
            .with_group_instance_id(Some(s("i")));
        assert_eq!(c.call(&sync, 5).error_code, OK);
        // The broker last heard from the member before this instant; from here it is silent
        // (a static member keeps its connection but sends nothing, as a paused process would).
        silent.push((group, c, Instant::now()));
        // Not a synchronisation: spaces the deadlines across a sweep period (see above).
        std::thread::sleep(Duration::from_millis(STAGGER_MS));
    }
    // Each member is still there well before its deadline...
    for (group, _, last_heard) in &silent {
        let early = *last_heard + session - Duration::from_millis(400);
        std::thread::sleep(early.saturating_duration_since(Instant::now()));
        assert_eq!(
            describe(&mut admin, group),
            ("Stable".to_string(), 1),
            "{group} expired early"
        );
    }
    // ...and gone by it: waiting out the deadline is what this test measures.
    for (group, _, last_heard) in &silent {
        let check_at = *last_heard + session + Duration::from_millis(LATE_MS_MAX);
        std::thread::sleep(check_at.saturating_duration_since(Instant::now()));
        assert_eq!(delete(&mut admin, group), OK, "{group} still there");
    }
}
