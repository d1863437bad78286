//! One test battery, run against every backend (the `backends!` invocation at the bottom).

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::{Mapping, Store, StoreError};

fn m(jid: &str, sip: &str, t: u64) -> Mapping {
    Mapping {
        jid: jid.into(),
        sip: sip.into(),
        created_unix: t,
    }
}

fn lookups_are_normalized_both_ways(s: &Store) {
    let alice = m("alice@localhost", "sip:alice@pbx.example", 1);
    assert_eq!(s.mappings.put(&alice).unwrap(), None);
    assert_eq!(
        s.mappings.by_jid("alice@localhost").unwrap(),
        Some(alice.clone())
    );
    assert_eq!(
        s.mappings.by_jid(" Alice@LOCALHOST ").unwrap(),
        Some(alice.clone())
    );
    assert_eq!(
        s.mappings.by_sip("sip:alice@pbx.example").unwrap(),
        Some(alice.clone())
    );
    assert_eq!(
        s.mappings.by_sip("SIP:alice@PBX.Example").unwrap(),
        Some(alice.clone())
    );
    // The SIP user part is case-sensitive (RFC 3261 §19.1.4).
    assert_eq!(s.mappings.by_sip("sip:Alice@pbx.example").unwrap(), None);
    assert_eq!(s.mappings.by_jid("bob@localhost").unwrap(), None);
    assert_eq!(s.mappings.by_sip("sip:bob@pbx.example").unwrap(), None);
}

fn stored_strings_are_trimmed(s: &Store) {
    s.mappings
        .put(&m("  alice@localhost\n", "\tsip:alice@pbx.example ", 7))
        .unwrap();
    assert_eq!(
        s.mappings.list().unwrap(),
        vec![m("alice@localhost", "sip:alice@pbx.example", 7)]
    );
}

fn same_jid_new_sip_drops_old_sip(s: &Store) {
    let old = m("alice@localhost", "sip:alice@old.example", 1);
    let new = m("Alice@localhost", "sip:alice@new.example", 2);
    s.mappings.put(&old).unwrap();
    assert_eq!(s.mappings.put(&new).unwrap(), Some(old));
    assert_eq!(s.mappings.by_sip("sip:alice@old.example").unwrap(), None);
    assert_eq!(
        s.mappings.by_sip("sip:alice@new.example").unwrap(),
        Some(new.clone())
    );
    assert_eq!(
        s.mappings.by_jid("alice@localhost").unwrap(),
        Some(new.clone())
    );
    assert_eq!(s.mappings.list().unwrap(), vec![new]);
}

fn same_sip_new_jid_drops_old_jid(s: &Store) {
    let old = m("alice@localhost", "sip:desk@pbx.example", 1);
    let new = m("bob@localhost", "sip:desk@PBX.example", 2);
    s.mappings.put(&old).unwrap();
    assert_eq!(s.mappings.put(&new).unwrap(), Some(old));
    assert_eq!(s.mappings.by_jid("alice@localhost").unwrap(), None);
    assert_eq!(
        s.mappings.by_sip("sip:desk@pbx.example").unwrap(),
        Some(new.clone())
    );
    assert_eq!(s.mappings.list().unwrap(), vec![new]);
}

fn conflict_on_both_sides_drops_both_pairs(s: &Store) {
    let a = m("a@localhost", "sip:a@pbx", 1);
    let b = m("b@localhost", "sip:b@pbx", 2);
    s.mappings.put(&a).unwrap();
    s.mappings.put(&b).unwrap();
    let cross = m("a@localhost", "sip:b@pbx", 3);
    // The JID's own previous pair is the one reported.
    assert_eq!(s.mappings.put(&cross).unwrap(), Some(a));
    assert_eq!(s.mappings.by_sip("sip:a@pbx").unwrap(), None);
    assert_eq!(s.mappings.by_jid("b@localhost").unwrap(), None);
    assert_eq!(
        s.mappings.by_jid("a@localhost").unwrap(),
        Some(cross.clone())
    );
    assert_eq!(s.mappings.by_sip("sip:b@pbx").unwrap(), Some(cross.clone()));
    assert_eq!(s.mappings.list().unwrap(), vec![cross]);
}

fn putting_the_same_pair_again_is_idempotent(s: &Store) {
    let a = m("a@localhost", "sip:a@pbx", 1);
    s.mappings.put(&a).unwrap();
    assert_eq!(s.mappings.put(&a).unwrap(), Some(a.clone()));
    assert_eq!(s.mappings.list().unwrap(), vec![a.clone()]);
    assert_eq!(s.mappings.by_sip("sip:a@pbx").unwrap(), Some(a));
}

fn remove_drops_both_lookups(s: &Store) {
    let a = m("a@localhost", "sip:a@pbx", 1);
    let b = m("b@localhost", "sip:b@pbx", 2);
    s.mappings.put(&a).unwrap();
    s.mappings.put(&b).unwrap();
    assert_eq!(s.mappings.remove_jid("A@LocalHost").unwrap(), Some(a));
    assert_eq!(s.mappings.remove_jid("a@localhost").unwrap(), None);
    assert_eq!(s.mappings.by_jid("a@localhost").unwrap(), None);
    assert_eq!(s.mappings.by_sip("sip:a@pbx").unwrap(), None);
    assert_eq!(s.mappings.list().unwrap(), vec![b.clone()]);
    // The SIP URI is free again for another JID, with nothing to replace.
    let c = m("c@localhost", "sip:a@pbx", 3);
    assert_eq!(s.mappings.put(&c).unwrap(), None);
}

fn list_is_ordered_by_normalized_jid(s: &Store) {
    for (i, jid) in ["carol@h", "Alice@h", "bob@h"].iter().enumerate() {
        s.mappings
            .put(&m(jid, &format!("sip:{i}@pbx"), i as u64))
            .unwrap();
    }
    let jids: Vec<_> = s
        .mappings
        .list()
        .unwrap()
        .into_iter()
        .map(|m| m.jid)
        .collect();
    assert_eq!(jids, ["Alice@h", "bob@h", "carol@h"]);
}

fn empty_keys_are_rejected(s: &Store) {
    assert!(matches!(
        s.mappings.put(&m("  ", "sip:a@pbx", 0)),
        Err(StoreError::EmptyKey("jid"))
    ));
    assert!(matches!(
        s.mappings.put(&m("a@h", "", 0)),
        Err(StoreError::EmptyKey("sip"))
    ));
    assert_eq!(s.mappings.list().unwrap(), vec![]);
}

fn outbox_is_a_fifo(s: &Store) {
    let o = &s.outbox;
    assert!(o.is_empty().unwrap());
    let a = o.push(b"one").unwrap();
    let b = o.push(b"").unwrap();
    let c = o.push(&[0xff; 3]).unwrap();
    assert!(a < b && b < c);
    assert_eq!(o.len().unwrap(), 3);
    assert_eq!(
        o.pending().unwrap(),
        vec![(a, b"one".to_vec()), (b, vec![]), (c, vec![0xff; 3])]
    );
    o.remove(b).unwrap();
    o.remove(b).unwrap(); // removing twice is a no-op
    o.remove(c + 1000).unwrap(); // so is removing what never was
    assert_eq!(
        o.pending().unwrap(),
        vec![(a, b"one".to_vec()), (c, vec![0xff; 3])]
    );
    o.flush().unwrap();
    o.remove(a).unwrap();
    o.remove(c).unwrap();
    assert!(o.is_empty().unwrap());
    assert_eq!(o.pending().unwrap(), vec![]);
    // Seqs are never reused, even once the queue has drained.
    let d = o.push(b"four").unwrap();
    assert!(d > c);
}

fn outbox_seq_order_past_256(s: &Store) {
    // Past one byte, so a little-endian key would iterate out of order.
    let seqs: Vec<u64> = (0..300u32)
        .map(|i| s.outbox.push(&i.to_be_bytes()).unwrap())
        .collect();
    let pending = s.outbox.pending().unwrap();
    assert_eq!(pending.iter().map(|p| p.0).collect::<Vec<_>>(), seqs);
    for (i, (_, item)) in pending.iter().enumerate() {
        assert_eq!(item, &(i as u32).to_be_bytes());
    }
}

fn outbox_concurrent_pushes_get_distinct_seqs(s: &Store) {
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let o = Arc::clone(&s.outbox);
            std::thread::spawn(move || {
                (0..50u8)
                    .map(|i| o.push(&[t, i]).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs = BTreeSet::new();
    for t in threads {
        for seq in t.join().unwrap() {
            assert!(seqs.insert(seq), "seq {seq} handed out twice");
        }
    }
    assert_eq!(s.outbox.len().unwrap(), 200);
    let pending: Vec<u64> = s
        .outbox
        .pending()
        .unwrap()
        .into_iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(pending, seqs.into_iter().collect::<Vec<_>>());
}

fn tables_list_by_prefix_and_flush(s: &Store) {
    use crate::Table::*;
    let t = &s.tables;
    for (k, v) in [
        ("sip:dave@c|sip:dave@127.0.0.1:1", "a"),
        ("sip:dave@c|sip:dave@127.0.0.1:2", "b"),
        ("sip:dave2@c|sip:x@127.0.0.1:3", "c"),
        ("sip:dav@c|sip:y@127.0.0.1:4", "d"),
    ] {
        t.put(Bindings, k, v.as_bytes()).unwrap();
    }
    t.put(Held, "sip:dave@c|1", b"held").unwrap();
    let got: Vec<String> = t
        .list_prefix(Bindings, "sip:dave@c|")
        .unwrap()
        .into_iter()
        .map(|(_, v)| String::from_utf8(v).unwrap())
        .collect();
    assert_eq!(
        got,
        vec!["a", "b"],
        "only that AOR, in key order, only that table"
    );
    assert_eq!(t.list_prefix(Bindings, "").unwrap().len(), 4);
    assert!(t.list_prefix(Bindings, "sip:nobody").unwrap().is_empty());
    assert!(t.list_prefix(SipUsers, "sip:dave@c|").unwrap().is_empty());
    t.flush().unwrap();
    assert_eq!(t.get(Held, "sip:dave@c|1").unwrap(), Some(b"held".to_vec()));
    assert!(t.remove(Held, "sip:dave@c|1").unwrap());
    assert!(!t.remove(Held, "sip:dave@c|1").unwrap());
    // Accounts are keyed `jid|id`: one user's accounts by prefix, apart from the others.
    t.put(Accounts, "alice@h|work", b"w").unwrap();
    t.put(Accounts, "alice@h|home", b"h").unwrap();
    t.put(Accounts, "alice2@h|x", b"x").unwrap();
    let keys: Vec<String> = t
        .list_prefix(Accounts, "alice@h|")
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, vec!["alice@h|home", "alice@h|work"]);
    assert!(t.list_prefix(Bindings, "alice@h|").unwrap().is_empty());
}

fn presence_tables_are_separate_namespaces(s: &Store) {
    use crate::Table::*;
    let p = &s.tables;
    p.put(Watches, "alice@localhost sip:carol@pbx", b"w1")
        .unwrap();
    p.put(Watchers, "alice@localhost sip:carol@pbx", b"n1")
        .unwrap();
    p.put(Watches, "alice@localhost sip:bob@pbx", b"w2")
        .unwrap();
    assert_eq!(
        p.get(Watches, "alice@localhost sip:carol@pbx").unwrap(),
        Some(b"w1".to_vec())
    );
    assert_eq!(
        p.get(Watchers, "alice@localhost sip:carol@pbx").unwrap(),
        Some(b"n1".to_vec())
    );
    assert_eq!(
        p.get(Authorizations, "alice@localhost sip:carol@pbx")
            .unwrap(),
        None
    );
    let keys: Vec<String> = p
        .list(Watches)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        keys,
        vec![
            "alice@localhost sip:bob@pbx",
            "alice@localhost sip:carol@pbx"
        ]
    );
    // Overwrite, remove, remove again.
    p.put(Watches, "alice@localhost sip:bob@pbx", b"w3")
        .unwrap();
    assert_eq!(
        p.get(Watches, "alice@localhost sip:bob@pbx").unwrap(),
        Some(b"w3".to_vec())
    );
    assert!(p.remove(Watches, "alice@localhost sip:bob@pbx").unwrap());
    assert!(!p.remove(Watches, "alice@localhost sip:bob@pbx").unwrap());
    assert_eq!(p.list(Watches).unwrap().len(), 1);
    assert_eq!(p.list(Watchers).unwrap().len(), 1);
    assert!(p.list(Published).unwrap().is_empty());
    assert!(matches!(
        p.put(Published, "", b"x"),
        Err(StoreError::EmptyKey(_))
    ));
}

/// Runs every function of the battery against one backend, each test on a fresh store.
macro_rules! backend {
    (@tests $fixture:expr; $($test:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                let (store, _guard) = $fixture;
                super::$test(&store);
            }
        )*
    };
    ($name:ident, $fixture:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            backend!(@tests $fixture;
                lookups_are_normalized_both_ways,
                stored_strings_are_trimmed,
                same_jid_new_sip_drops_old_sip,
                same_sip_new_jid_drops_old_jid,
                conflict_on_both_sides_drops_both_pairs,
                putting_the_same_pair_again_is_idempotent,
                remove_drops_both_lookups,
                list_is_ordered_by_normalized_jid,
                empty_keys_are_rejected,
                outbox_is_a_fifo,
                outbox_seq_order_past_256,
                outbox_concurrent_pushes_get_distinct_seqs,
                presence_tables_are_separate_namespaces,
                tables_list_by_prefix_and_flush,
            );
        }
    };
}

backend!(memory, (Store::memory(), ()));
backend!(sled, {
    let dir = tempfile::tempdir().unwrap();
    (Store::open_sled(dir.path()).unwrap(), dir)
});
