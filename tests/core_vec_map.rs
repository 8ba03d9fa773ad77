#![cfg(not(target_arch = "wasm32"))]
//! Host tests of `core::vec_map::VecMap` against `BTreeMap`: any sequence of inserts, removes,
//! retains and lookups leaves both with the same entries in the same order and the same answers.

use std::collections::BTreeMap;

use background_assets::core::vec_map::VecMap;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Insert(u8, u32),
    Remove(u8),
    Get(u8),
    GetMut(u8, u32),
    RetainEven,
}

fn op() -> impl Strategy<Value = Op> {
    // Keys from a small range so that inserts replace and removes hit.
    prop_oneof![
        (0u8..24, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
        (0u8..24).prop_map(Op::Remove),
        (0u8..24).prop_map(Op::Get),
        (0u8..24, any::<u32>()).prop_map(|(k, v)| Op::GetMut(k, v)),
        Just(Op::RetainEven),
    ]
}

proptest! {
    #[test]
    fn behaves_as_a_btree_map(ops in proptest::collection::vec(op(), 0..200)) {
        let mut ours: VecMap<String, u32> = VecMap::new();
        let mut model: BTreeMap<String, u32> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Insert(k, v) => {
                    prop_assert_eq!(ours.insert(k.to_string(), v), model.insert(k.to_string(), v));
                }
                Op::Remove(k) => {
                    prop_assert_eq!(ours.remove(k.to_string().as_str()), model.remove(k.to_string().as_str()));
                }
                Op::Get(k) => {
                    let key = k.to_string();
                    prop_assert_eq!(ours.get(key.as_str()), model.get(key.as_str()));
                    prop_assert_eq!(ours.contains_key(key.as_str()), model.contains_key(key.as_str()));
                }
                Op::GetMut(k, v) => {
                    let key = k.to_string();
                    if let Some(x) = ours.get_mut(key.as_str()) { *x = v; }
                    if let Some(x) = model.get_mut(key.as_str()) { *x = v; }
                }
                Op::RetainEven => {
                    let mut seen_ours = Vec::new();
                    let mut seen_model = Vec::new();
                    ours.retain(|k, v| { seen_ours.push(k.clone()); *v % 2 == 0 });
                    model.retain(|k, v| { seen_model.push(k.clone()); *v % 2 == 0 });
                    prop_assert_eq!(seen_ours, seen_model, "retain visits in key order");
                }
            }
            prop_assert_eq!(ours.len(), model.len());
            prop_assert_eq!(ours.is_empty(), model.is_empty());
            prop_assert!(ours.iter().eq(model.iter()));
            prop_assert!(ours.keys().eq(model.keys()));
            prop_assert!(ours.values().eq(model.values()));
        }
        prop_assert_eq!(ours.clone().into_iter().collect::<Vec<_>>(), model.clone().into_iter().collect::<Vec<_>>());
        let rebuilt: VecMap<String, u32> = model.clone().into_iter().rev().collect();
        prop_assert!(rebuilt.iter().eq(model.iter()));
    }
}

#[test]
fn collecting_keeps_the_last_value_of_a_repeated_key() {
    let m: VecMap<&str, u32> = [("b", 1), ("a", 2), ("b", 3)].into_iter().collect();
    let model: BTreeMap<&str, u32> = [("b", 1), ("a", 2), ("b", 3)].into_iter().collect();
    assert!(m.iter().eq(model.iter()));
    assert_eq!(m.get("b"), Some(&3));
}
